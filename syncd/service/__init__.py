"""Living as a service: logging to a terminal or journald (`logs`), systemd's
notify protocol and watchdog (`systemd`) and the Prometheus endpoint (`metrics`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`, `syncd.dam`,
`syncd.engine`.
"""
