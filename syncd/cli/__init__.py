"""The command line: the grammar (`parser`), the entry point and dispatch (`main`), the
exit codes (`exits`), `syncd sync` and `syncd run` (`sync`), `syncd status` (`status`),
`syncd demo` (`demo`), shell completion (`completion`), and what a run prints
(`progress`, `dryrun`).

May import anything. Heavy modules (aiohttp, tqdm, prometheus-client, the engine) are
imported inside the command that needs them, so `syncd --version` and `syncd status`
start in an instant.
"""
