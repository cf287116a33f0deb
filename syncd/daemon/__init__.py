"""The long-running daemon: its lifecycle (`lifecycle`), the watchers of every
folder feeding one debouncing queue (`watchers`, `queue`), the queue's journal in the state
(`journal`), the batches of settled paths (`batches`) and the SIGHUP reload, prepared in
`reload` and committed by the daemon.

May import every lower layer: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`,
`syncd.state`, `syncd.local`, `syncd.dam`, `syncd.engine`, `syncd.service`.
"""
