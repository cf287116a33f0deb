"""The local side: exclude rules (`filters`), safe file-system access that never
follows a link out of a root (`fs`), the walk (`scan`, whole or sorted, over `walk`'s one
directory at a time), hashing and streaming a file's content (`source`) and the watcher
of one folder (`watch`, on watchfiles).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`.
"""
