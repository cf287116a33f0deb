"""The configuration: the TOML schema and its validation (`schema`, `rules`), default
paths (`paths`), the API key and how it is read and protected (`apikey`), and the pure diff
between two configurations that a reload applies (`diff`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`. Nothing here does I/O beyond
reading the config and key files.
"""
