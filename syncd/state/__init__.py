"""The embedded state store (stdlib sqlite3): which asset each local file became
(`store`; `rows` reads a folder's rows in path order beside a walk), the schema and its
migrations (`schema`), the records of work still owed (`records`: parked files, orphans,
uploads of unknown outcome) and the single-writer lock (`lock`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`.
"""
