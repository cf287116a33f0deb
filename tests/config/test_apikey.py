"""Tests for syncd.config.apikey: where the key comes from, and that no message shows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.config.apikey import key_file_warning, read_api_key
from syncd.config.schema import DamConfig
from syncd.errors import AuthError

SECRET = "s3cr3t-KEY-value"


def dam(key_file: Path | None = None) -> DamConfig:
    return DamConfig(
        "abc123", "https://api.filerobot.com", key_file, 120.0, 10.0, 8, 2, 1, 0.0, 6, 0.5, 30.0
    )


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A key file and a systemd credentials directory, each holding a different key."""
    key_file = tmp_path / "api-key"
    key_file.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-key").write_text("  from-credential  \n")
    return {"key_file": key_file, "creds": creds}


@pytest.mark.parametrize(
    ("env_key", "use_creds", "use_file", "expected"),
    [
        (" from-env\n", True, True, "from-env"),
        ("", True, True, "from-credential"),
        ("   ", True, True, "from-credential"),
        (None, True, True, "from-credential"),
        (None, False, True, "from-file"),
        (None, False, False, None),
    ],
)
def test_read_api_key_precedence(
    keys: dict[str, Path],
    env_key: str | None,
    use_creds: bool,
    use_file: bool,
    expected: str | None,
) -> None:
    env = {} if env_key is None else {"SYNCD_API_KEY": env_key}
    if use_creds:
        env["CREDENTIALS_DIRECTORY"] = str(keys["creds"])
    dam_config = dam(keys["key_file"] if use_file else None)
    if expected is None:
        with pytest.raises(AuthError, match=r"^no API key configured; set \$SYNCD_API_KEY"):
            read_api_key(dam_config, env)
    else:
        assert read_api_key(dam_config, env) == expected


def test_credentials_directory_without_key_falls_through(keys: dict[str, Path]) -> None:
    (keys["creds"] / "api-key").unlink()
    env = {"CREDENTIALS_DIRECTORY": str(keys["creds"])}
    assert read_api_key(dam(keys["key_file"]), env) == "from-file"


def test_read_api_key_uses_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_API_KEY", "k")
    assert read_api_key(dam()) == "k"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read API key file {path} (No such file or directory)"),
        ("", "API key file {path} is empty; write the API key into it"),
        (" \n\t\n", "API key file {path} is empty"),
        (f"{SECRET}\nsecond line", "API key file {path} has spaces or control characters"),
        (b"\xff" + SECRET.encode(), "API key file {path} is not UTF-8 text"),
        ("DIR", "cannot read API key file {path} (Is a directory)"),
    ],
)
def test_read_api_key_file_errors(
    tmp_path: Path, content: str | bytes | None, fragment: str
) -> None:
    path = tmp_path / "api-key"
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(AuthError) as info:
        read_api_key(dam(path), {})
    message = str(info.value)
    assert fragment.format(path=path) in message
    assert SECRET not in message
    assert "\n" not in message


def test_unreadable_credential_is_named(
    keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def deny(self: Path, encoding: str | None = None) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", deny)
    env = {"CREDENTIALS_DIRECTORY": str(keys["creds"])}
    with pytest.raises(AuthError, match="Permission denied") as info:
        read_api_key(dam(keys["key_file"]), env)
    assert str(keys["creds"] / "api-key") in str(info.value)


def test_key_in_environment_with_spaces_is_refused_without_echo() -> None:
    with pytest.raises(AuthError) as info:
        read_api_key(dam(), {"SYNCD_API_KEY": f"{SECRET} extra"})
    assert "$SYNCD_API_KEY has spaces or control characters" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("mode", "warns"),
    [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o620, True), (0o644, True)],
)
def test_key_file_warning(tmp_path: Path, mode: int, warns: bool) -> None:
    path = tmp_path / "api-key"
    path.write_text(SECRET)
    os.chmod(path, mode)
    warning = key_file_warning(path)
    if warns:
        assert warning == (
            f"API key file {path} is accessible by group or others (mode {mode:04o}); "
            f"restrict it with: chmod 600 {path}"
        )
    else:
        assert warning is None


def test_key_file_warning_missing_file(tmp_path: Path) -> None:
    assert key_file_warning(tmp_path / "nope") is None


def test_protect_key_wipes_the_environment_and_stops_core_dumps():
    """In a fresh interpreter: after `protect_key()` the key is in neither `os.environ`
    nor /proc/self/environ, the process is not dumpable, and the key is still found."""
    code = (
        "import ctypes, os\n"
        "from syncd.config.apikey import protect_key, read_api_key\n"
        "from syncd.config.schema import DamConfig\n"
        "protect_key()\n"
        "dam = DamConfig('t', 'https://x', None, 1, 1, 1, 1, 1, 0, 1, 1, 1)\n"
        "print(os.environ.get('SYNCD_API_KEY'))\n"
        "print(b'k3y-abcdefghij' in open('/proc/self/environ', 'rb').read())\n"
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
        "print(read_api_key(dam))\n"
    )
    env = {**os.environ, "SYNCD_API_KEY": "k3y-abcdefghij"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["None", "False", "0", "k3y-abcdefghij"]
