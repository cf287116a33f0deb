"""The sync engine: what to do (pure: `match`, `plan`, `plan_full`) and doing it
(`survey` looks at both sides, `folder` runs one folder, `executor` and `upload` carry
out the actions, `moves`, `strays`), one `--initial-sync` pass over every folder
(`initial_sync`) and the run's totals (`progress`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`, `syncd.state`,
`syncd.local`, `syncd.dam`.
"""
