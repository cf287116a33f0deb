"""The DAM side: the one package that speaks HTTP (aiohttp). The client and its
session (`client`), the operations built on it (`ops`), the wire format and its validation
(`wire`, `response`, `multipart`, `listing`), TLS (`tls`), the shared pacer with its
backoff (`pacer`) and the client built from a configuration (`connect`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`.
"""
