"""The DAM side: the one package that speaks HTTP (aiohttp). The client and its
session (`client`), the operations built on it (`ops`), the wire format and its validation
(`wire`, `response`, `multipart`, `listing`), TLS (`tls`) and proxies (`proxy`), the shared
pacer (`pacer`) with its pure arithmetic (`limits`: backoff, concurrency, learned rate), and
the client built from a configuration (`connect`).

May import: `syncd.errors`, `syncd.model`, `syncd.redact`, `syncd.config`.
"""
