"""The `syncd-emulator` command: parse flags, serve until SIGINT or SIGTERM, exit 0.

Once listening it prints exactly one line, `emulator listening on http://HOST:PORT
token=TOKEN` (`https://` with `--tls-cert`), so a parent process can wait for it and read the
port (use `--port 0`)."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import anyio

from syncd.emulator.blobs import ContentMode
from syncd.emulator.options import Duplicates, Naming, Options, RetryAfterStyle, SameName
from syncd.emulator.server import serve

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(
        prog="syncd-emulator",
        description="Local emulator of the Scaleflex DAM (Filerobot) v4 API used by syncd.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8750, help="port; 0 picks a free one")
    p.add_argument("--token", default="demo", help="project token in API paths")
    p.add_argument("--key", default="demo", help="required X-Filerobot-Key value")
    p.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate (chain)"
    )
    p.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="its private key (default: in --tls-cert)"
    )
    policy = p.add_argument_group("project policies")
    policy.add_argument("--naming", choices=get_args(Naming), default="keep")
    policy.add_argument("--same-name", choices=get_args(SameName), default="override")
    policy.add_argument("--duplicates", choices=get_args(Duplicates), default="accept")
    policy.add_argument(
        "--same-asset-status",
        type=int,
        default=409,
        metavar="STATUS",
        help="HTTP status of SAME_ASSET_EXISTS_SKIP_UPLOAD / ERROR_SHA1_CONFLICT (default 409)",
    )
    policy.add_argument("--size-as-int", action="store_true", help="send size as a number")
    policy.add_argument(
        "--folder-trailing-slash", action="store_true", help="send file folder.name as /a/b/"
    )
    content = p.add_mutually_exclusive_group()
    content.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="keep content in files under DIR"
    )
    content.add_argument(
        "--no-content", action="store_true", help="keep only hashes and sizes (downloads: 410)"
    )
    faults = p.add_argument_group("fault injection")
    faults.add_argument(
        "--rate-limit", type=float, default=0.0, metavar="RPS", help="requests/s; 0 = off"
    )
    faults.add_argument(
        "--retry-after", choices=get_args(RetryAfterStyle), default="seconds", help="429 style"
    )
    faults.add_argument(
        "--error-rate", type=float, default=0.0, metavar="P", help="chance of a 500/502/503"
    )
    faults.add_argument(
        "--reset-before-commit-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="chance an upload's connection drops before the file is stored",
    )
    faults.add_argument(
        "--reset-after-commit-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="chance an upload's connection drops after the file is stored",
    )
    faults.add_argument(
        "--slow-ms", type=float, default=0.0, metavar="MS", help="delay per API request"
    )
    faults.add_argument(
        "--max-upload-bytes",
        type=int,
        default=0,
        metavar="N",
        help="refuse larger uploads with 413 (0: no limit)",
    )
    faults.add_argument(
        "--error-body-rate",
        type=float,
        default=0.0,
        metavar="P",
        help='chance of an HTTP 200 with "status":"error"',
    )
    faults.add_argument(
        "--seed", type=int, default=None, metavar="N", help="seed of the random generator"
    )
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "naming": args.naming,
        "same_name": args.same_name,
        "duplicates": args.duplicates,
        "same_asset_status": args.same_asset_status,
        "size_as_int": args.size_as_int,
        "folder_trailing_slash": args.folder_trailing_slash,
        "rate_limit": args.rate_limit,
        "retry_after_style": args.retry_after,
        "error_rate": args.error_rate,
        "reset_before_commit_rate": args.reset_before_commit_rate,
        "reset_after_commit_rate": args.reset_after_commit_rate,
        "slow_ms": args.slow_ms,
        "max_upload_bytes": args.max_upload_bytes,
        "error_body_rate": args.error_body_rate,
        "seed": args.seed,
    }


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


async def _serve_until_signal(
    args: argparse.Namespace, options: dict[str, Any], context: ssl.SSLContext | None
) -> None:
    content: ContentMode = "disk" if args.data_dir else "none" if args.no_content else "memory"
    # Receive signals before announcing the port, so a SIGTERM sent as soon as the line is
    # read cannot kill the process uncleanly.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(
            args.host,
            args.port,
            token=args.token,
            key=args.key,
            content=content,
            data_dir=args.data_dir,
            ssl_context=context,
            **options,
        ) as emu:
            sys.stdout.write(f"emulator listening on {emu.url} token={emu.token}\n")
            sys.stdout.flush()
            async for _signum in signals:
                break


def run(argv: Sequence[str] | None = None) -> int:
    """Run the emulator from the command line.

    Args:
        argv: the arguments (without the program name); `sys.argv[1:]` when None.

    Returns:
        The exit status: 0 after SIGINT or SIGTERM.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    options = _options(args)
    try:
        Options(**options)
    except ValueError as exc:
        parser.error(str(exc))
    if args.tls_key is not None and args.tls_cert is None:
        parser.error("--tls-key needs --tls-cert")
    try:
        context = _ssl_context(args)
    except OSError as exc:  # ssl.SSLError too: a missing file, or not a certificate and key
        parser.error(f"cannot load --tls-cert/--tls-key: {exc}")
    anyio.run(_serve_until_signal, args, options, context)
    return 0
