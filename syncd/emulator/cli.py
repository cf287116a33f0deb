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
from syncd.emulator.options import (
    Duplicates,
    Malice,
    Naming,
    Options,
    QMatch,
    RateLimitScope,
    RenameInfoName,
    RetryAfterStyle,
    SameAssetBy,
    SameName,
    SortRule,
    UpdatedAfterRule,
)
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
        "--extra-key",
        action="append",
        default=[],
        metavar="KEY",
        help="another accepted X-Filerobot-Key (repeatable), as for another host",
    )
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
    _add_unknowns(p)
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
        "--rate-burst",
        type=float,
        default=0.0,
        metavar="N",
        help="requests the rate limit lets through at once; 0 = as many as one second's",
    )
    faults.add_argument(
        "--retry-after", choices=get_args(RetryAfterStyle), default="seconds", help="429 style"
    )
    faults.add_argument(
        "--rate-limit-scope",
        choices=get_args(RateLimitScope),
        default="project",
        help="one bucket for the project (default) or one per API key (unknown: §12.9)",
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
        "--latency-ms",
        "--slow-ms",
        dest="slow_ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="delay before each API request is answered: a DAM this far away",
    )
    faults.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="each request's delay varies by up to this much either way",
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
    faults.add_argument(
        "--malice",
        choices=get_args(Malice),
        default="off",
        help="a deliberately hostile DAM: echo_key (the key in error messages),"
        " endless_pages / repeat_pages / uncounted_pages (listings that never end),"
        " gzip_bomb (listings inflating to 1 GiB), trickle (upload replies a byte at a"
        " time), wrong_types (wrong types in every answer); default off",
    )
    return p


def _add_unknowns(p: argparse.ArgumentParser) -> None:
    """Add the switches for DAM behaviour no source documents (see `Options`)."""
    unknown = p.add_argument_group(
        "undocumented behaviour (docs/dam-api.md §12)",
        "How the real DAM behaves here is not known; each default is the least convenient"
        " reading that costs no time.",
    )
    unknown.add_argument(
        "--q-match",
        choices=get_args(QMatch),
        default="stored",
        help="what q matches: a substring of the stored name (default), of it or info.name,"
        " a whole word of the stored name, or nothing (§12.19)",
    )
    unknown.add_argument(
        "--listing-lag-s",
        type=float,
        default=0.0,
        metavar="S",
        help="file listings show the project as it was S seconds ago (default 0, §12.21)",
    )
    unknown.add_argument(
        "--rename-info-name",
        choices=get_args(RenameInfoName),
        default="kept",
        help="whether a rename keeps info.name (default) or rewrites it (§12.20)",
    )
    unknown.add_argument(
        "--same-asset-by",
        choices=get_args(SameAssetBy),
        default="stored",
        help="whether the skip of identical content under the same name compares the stored"
        " name (default: under a renaming rule a re-send is a second asset) or the name"
        " sent (§2.3)",
    )
    unknown.add_argument(
        "--updated-after",
        choices=get_args(UpdatedAfterRule),
        default="second",
        help="updated_after compares milliseconds, whole seconds (default) or nothing (§12.21)",
    )
    unknown.add_argument(
        "--sort",
        choices=get_args(SortRule),
        default="ignored",
        help="honour sort/order, or always list by stored name (default: ignored, §3.1)",
    )
    unknown.add_argument(
        "--page-drift",
        action="store_true",
        help="list newest first whatever is asked, so offset pages shift (§12.7)",
    )
    unknown.add_argument(
        "--no-listing-sha1",
        dest="listing_sha1",
        action="store_false",
        help="leave hash.sha1 out of listed files (§3.3)",
    )
    unknown.add_argument(
        "--no-noop-conflict",
        dest="noop_conflict",
        action="store_false",
        help="let a rename to the current name or a move to the current folder succeed"
        " (default: 409 E801_ALREADY_EXIST, §12.22)",
    )
    unknown.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="PERM",
        help="answer 403 PERMISSION_DENIED where permission PERM is needed (§1.3); repeatable",
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "naming": args.naming,
        "same_name": args.same_name,
        "duplicates": args.duplicates,
        "same_asset_status": args.same_asset_status,
        "size_as_int": args.size_as_int,
        "folder_trailing_slash": args.folder_trailing_slash,
        "rate_limit": args.rate_limit,
        "rate_burst": args.rate_burst,
        "jitter_ms": args.jitter_ms,
        "retry_after_style": args.retry_after,
        "rate_limit_scope": args.rate_limit_scope,
        "error_rate": args.error_rate,
        "reset_before_commit_rate": args.reset_before_commit_rate,
        "reset_after_commit_rate": args.reset_after_commit_rate,
        "slow_ms": args.slow_ms,
        "max_upload_bytes": args.max_upload_bytes,
        "error_body_rate": args.error_body_rate,
        "seed": args.seed,
        "q_match": args.q_match,
        "listing_lag_s": args.listing_lag_s,
        "rename_info_name": args.rename_info_name,
        "updated_after": args.updated_after,
        "sort": args.sort,
        "page_drift": args.page_drift,
        "listing_sha1": args.listing_sha1,
        "noop_conflict": args.noop_conflict,
        "same_asset_by": args.same_asset_by,
        "denied_permissions": args.deny,
        "malice": args.malice,
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
            extra_keys=args.extra_key,
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
