"""`syncd probe`: find out how this DAM reads each behaviour `docs/dam-api.md`
marks unknown, in a scratch folder it always removes (`scratch`, `listing`, `run`), and
report it (`report`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`, `syncd.dam`.
"""
