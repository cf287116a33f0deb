"""The command line: the parser and its subcommands (`main`), `syncd status`
(`status`), `syncd demo` (`demo`), and what a run prints (`progress`, `dryrun`).

May import anything. Heavy modules (aiohttp, tqdm, prometheus-client, the engine) are
imported inside the command that needs them, so `syncd --version` and `syncd status`
start in an instant.
"""
