"""Tests of syncd.service.logs: JSON lines and console output, stdlib records routed through the same
chain, and masking of registered secrets everywhere."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

import syncd.redact as redaction
from syncd.emulator import serve
from syncd.redact import redact
from syncd.service.logs import Format, configure
from tests.conftest import KEY, TOKEN, run_syncd, write
from tests.harness import Pulse, config, make_files, notify_socket, running_daemon

SECRET = "s3cr3t-KEY-9f8e7d"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Leave structlog, the stdlib root logger and the secret list as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {name: logging.getLogger(name).level for name in ("watchfiles", "aiohttp.access")}
    monkeypatch.setattr(redaction, "_secrets", set())
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in others.items():
        logging.getLogger(name).setLevel(lvl)


def lines_of(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines():
    out = io.StringIO()
    assert configure(fmt="json", stream=out) is False
    log = structlog.get_logger("syncd.test")
    log.info("upload_done", path="a b.jpg", bytes=12)
    log.warning("rate_limited", wait_s=1.5)
    first, second = lines_of(out)
    assert first["event"] == "upload_done"
    assert first["level"] == "info"
    assert first["path"] == "a b.jpg"
    assert first["bytes"] == 12
    assert ISO_UTC.fullmatch(first["timestamp"])
    assert second["event"] == "rate_limited"
    assert second["level"] == "warning"
    assert second["wait_s"] == 1.5


def test_json_merges_context_variables():
    out = io.StringIO()
    configure(fmt="json", stream=out)
    structlog.contextvars.bind_contextvars(folder="/srv/a")
    structlog.get_logger().info("remote_unchanged")
    assert lines_of(out)[0]["folder"] == "/srv/a"


def test_level_filters_structlog_and_stdlib():
    out = io.StringIO()
    configure("warning", fmt="json", stream=out)
    structlog.get_logger().info("quiet")
    logging.getLogger("aiohttp.client").info("quiet too")
    structlog.get_logger().error("loud")
    assert [e["event"] for e in lines_of(out)] == ["loud"]
    assert logging.getLogger("watchfiles").level == logging.WARNING


def test_auto_picks_json_when_not_a_terminal():
    out = io.StringIO()
    assert configure(fmt="auto", stream=out) is False
    structlog.get_logger().info("hello")
    assert lines_of(out)[0]["event"] == "hello"


def test_stdlib_records_become_json_lines():
    out = io.StringIO()
    configure(fmt="json", stream=out)
    logging.getLogger("aiohttp.client").warning("connection to %s lost", "dam")
    (line,) = lines_of(out)
    assert line["event"] == "connection to dam lost"
    assert line["level"] == "warning"
    assert line["logger"] == "aiohttp.client"
    assert ISO_UTC.fullmatch(line["timestamp"])
    assert "_record" not in line
    assert "_from_structlog" not in line


def test_redact_masks_values_nested_values_and_stdlib_records():
    out = io.StringIO()
    configure(fmt="json", stream=out)
    redact(SECRET)
    redact("")  # an empty secret would mask everything; it is ignored
    log = structlog.get_logger()
    message = f"key is {SECRET}"
    log.info(
        message,
        header=f"X-Filerobot-Key: {SECRET}",
        nested={"a": [SECRET, {"b": f"x{SECRET}y"}], "n": 3},
        pair=("ok", SECRET),
    )
    logging.getLogger("aiohttp.client").warning("request with key %s failed", SECRET)
    text = out.getvalue()
    assert SECRET not in text
    event, record = lines_of(out)
    assert event["event"] == "key is ***"
    assert event["header"] == "X-Filerobot-Key: ***"
    assert event["nested"] == {"a": ["***", {"b": "x***y"}], "n": 3}
    assert event["pair"] == ["ok", "***"]
    assert record["event"] == "request with key *** failed"


def log_exception_holding_the_key(fmt: Format) -> io.StringIO:
    """Log an exception whose message holds the key, through structlog and stdlib."""
    out = io.StringIO()
    configure(fmt=fmt, stream=out)
    redact(SECRET)
    try:
        raise RuntimeError(f"bad key {SECRET}")
    except RuntimeError:
        structlog.get_logger().exception("boom")
        logging.getLogger("aiohttp.client").exception("stdlib boom")
    return out


def test_redact_masks_exceptions_in_json():
    out = log_exception_holding_the_key("json")
    text = out.getvalue()
    assert SECRET not in text
    event, record = lines_of(out)
    assert event["exception"][0]["exc_type"] == "RuntimeError"
    assert event["exception"][0]["exc_value"] == "bad key ***"
    assert record["event"] == "stdlib boom"
    assert record["exception"][0]["exc_value"] == "bad key ***"


@pytest.mark.parametrize(
    "text",
    [
        f"cut at a length: {SECRET[:11]}",  # a truncation keeps the start
        f"{SECRET[4:]} ends it",  # or the end
        f"wrapped {SECRET[2:10]} in the middle",
        f"twice: {SECRET[:9]} and {SECRET[-9:]}",
    ],
)
def test_scrub_masks_any_run_of_eight_characters_of_the_key(text):
    redact(SECRET)
    masked = redaction.scrub(text)
    assert "***" in masked
    for i in range(len(SECRET) - 7):
        assert SECRET[i : i + 8] not in masked


def test_scrub_leaves_other_text_alone():
    redact(SECRET)
    text = "upload /a/b.jpg: 413 ERR_FILE_TOO_LARGE s3cr3t-"  # 7 characters of the key
    assert redaction.scrub(text) == text


def test_json_tracebacks_carry_no_locals():
    out = io.StringIO()
    configure(fmt="json", stream=out)
    redact(SECRET)

    def fails(secret_in_a_local: str) -> None:
        raise RuntimeError("boom")

    try:
        fails(SECRET[:30] + "x" * 100)
    except RuntimeError:
        structlog.get_logger().exception("failed")
    (event,) = lines_of(out)
    frames = event["exception"][0]["frames"]
    assert all("locals" not in f or not f["locals"] for f in frames)
    assert SECRET[:8] not in out.getvalue()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[31mred", "a\\x1b[31mred"),  # an ANSI escape
        ("fake\nline", "fake\\x0aline"),
        ("over\rwrite", "over\\x0dwrite"),
        ("del\x7f and c1\x9b", "del\\x7f and c1\\x9b"),
        ("lone \udcff surrogate", "lone \\udcff surrogate"),
        ("plain é 日本", "plain é 日本"),
    ],
)
def test_escape_shows_control_characters(raw, shown):
    assert redaction.escape(raw) == shown


def test_console_escapes_control_characters():
    out = io.StringIO()
    configure(fmt="console", stream=out)
    structlog.get_logger().warning("file_skipped", path="evil\x1b[2J\nFAKE line")
    text = out.getvalue()
    assert "\x1b[2J" not in text
    assert len(text.splitlines()) == 1


def test_console_format():
    out = io.StringIO()
    assert configure(fmt="console", stream=out) is True
    structlog.get_logger().info("upload_done", path="a.jpg")
    logging.getLogger("aiohttp.client").warning("stdlib says %s", "hi")
    text = out.getvalue()
    first, second = text.splitlines()
    assert not first.startswith("{")
    assert "upload_done" in first
    assert "path=a.jpg" in first
    assert "info" in first
    assert "stdlib says hi" in second
    assert "\x1b[" not in text  # no colours when the stream is not a terminal


def test_console_redacts_values():
    out = io.StringIO()
    configure(fmt="console", stream=out)
    redact(SECRET)
    structlog.get_logger().info("using", key=SECRET, url=f"https://x/?k={SECRET}")
    logging.getLogger("aiohttp.client").warning("key %s", SECRET)
    text = out.getvalue()
    assert SECRET not in text
    assert "***" in text


def test_console_redacts_exceptions():
    text = log_exception_holding_the_key("console").getvalue()
    assert "RuntimeError" in text
    assert SECRET not in text


# End to end: every line the real syncd writes, under faults and at debug level


@pytest.mark.e2e
async def test_no_line_of_an_end_to_end_run_holds_the_key(tmp_path, short_dir):
    root = tmp_path / "root"
    make_files(root, 60)
    faults: dict[str, Any] = {"error_rate": 0.1, "error_body_rate": 0.1, "rate_limit": 40.0}
    out: list[str] = []
    async with serve(token=TOKEN, key=KEY, seed=5, **faults) as emu:
        cfg = config(tmp_path, emu, root)
        debug = ("--log-level", "debug", "--log-format", "json")
        dry = await run_syncd("--config", cfg, "--initial-sync", "--dry-run", *debug)
        first = await run_syncd("--config", cfg, "--initial-sync", *debug)
        assert first.code == 0, first.stderr
        out += [dry.stdout, dry.stderr, first.stdout, first.stderr]

        pulse = Pulse()
        async with notify_socket(short_dir, pulse) as listener:
            env = {"NOTIFY_SOCKET": listener.address}
            async with running_daemon(cfg, pulse, env=env, args=["--log-level", "debug"]) as d:
                with anyio.fail_after(30):
                    cmdline = await anyio.Path(f"/proc/{d.proc.pid}/cmdline").read_bytes()
                    # $SYNCD_API_KEY was wiped from the environment block the kernel
                    # shows; the reload below still finds the key.
                    environ = await anyio.Path(f"/proc/{d.proc.pid}/environ").read_bytes()
                    write(root / "new.txt", "new")
                    await d.wait_event("sync_batch", lambda e: e["uploaded"] == 1)
                    d.proc.send_signal(signal.SIGHUP)
                    await d.wait_event("reload_done")
                    status = await run_syncd("status", "--config", cfg, "--json")
            out += d.lines + [status.stdout, status.stderr]
        out += [m for msg in listener.messages for m in msg.values()]

        emu.revoke_key()
        revoked = await run_syncd("--config", cfg, "--initial-sync", *debug)
        assert revoked.code == 77
        out += [revoked.stdout, revoked.stderr]

    text = "\n".join(out)
    assert text.count("\n") > 150  # the run really said a lot
    assert '"dam_retry"' in text  # including the DAM's error messages
    assert KEY.encode() not in cmdline
    assert KEY.encode() not in environ
    assert KEY not in text


def test_every_event_names_the_module_it_comes_from():
    import ast

    from syncd.daemon import lifecycle

    out = io.StringIO()
    configure("info", "json", stream=out)
    lifecycle.log.info("probe_event")
    logging.getLogger("aiohttp.client").warning("from_stdlib")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["logger"] == "syncd.daemon.lifecycle"
    assert second["logger"] == "aiohttp.client"
    # Every module's logger is named by `__name__`: a name that means something.
    for path in (Path(lifecycle.__file__).parents[1]).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_logger"
            ):
                assert [ast.unparse(a) for a in node.args] == ["__name__"], path
