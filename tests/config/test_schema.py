"""Tests for syncd.config.schema: schema, one-line errors and default paths."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from syncd.config import paths
from syncd.config import schema as config
from syncd.config.paths import default_config_path, default_state_path
from syncd.config.schema import (
    Config,
    DamConfig,
    FolderConfig,
    MetricsConfig,
    StateConfig,
    config_from_dict,
    load_config,
)
from syncd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
SECRET = "s3cr3t-KEY-value"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A config directory with two sibling folder roots, `a` and `b`."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return tmp_path


def minimal() -> dict[str, Any]:
    return {"dam": {"token": "abc123"}, "folders": [{"local": "a", "remote": "/assets"}]}


def build(data: dict[str, Any], root: Path) -> Config:
    return config_from_dict(data, root / "config.toml", env={"HOME": str(root / "home")})


DELETE = object()


def with_value(data: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    """Copy of `data` with `dotted` (e.g. `folders.0.local`) set, or deleted when DELETE."""
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[int(last) if isinstance(node, list) else last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return data


def config_error(data: dict[str, Any], root: Path) -> str:
    with pytest.raises(ConfigError) as info:
        build(data, root)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{root / 'config.toml'}: ")
    assert info.value.__suppress_context__  # `from None`: the message is the whole story
    return message


# --- valid configs ---------------------------------------------------------------------------


def test_full_config(root: Path) -> None:
    data = {
        "dam": {
            "token": "abc123",
            "base_url": "http://127.0.0.1:8080/api/",
            "key_file": "secrets/api-key",
            "timeout_s": 30,
            "connect_timeout_s": 2.5,
            "workers": 64,
            "stream_threshold_mb": 0.5,
            "max_requests_per_second": 40,
            "max_attempts": 3,
            "backoff_base_s": 0.25,
            "backoff_max_s": 5,
        },
        "state": {"path": "/var/lib/syncd/state.db"},
        "sync": {"max_delete_percent": 50, "max_delete_count": 0},
        "folders": [
            {
                "local": "a",
                "remote": "//assets//photos/",
                "exclude": ["*.psd", "cache/"],
                "delete_unknown": True,
                "max_delete_percent": 100.0,
                "max_delete_count": 1000,
            },
            {"local": str(root / "b"), "remote": "/other"},
        ],
    }
    cfg = build(data, root)
    assert cfg == Config(
        source=root / "config.toml",
        dam=DamConfig(
            token="abc123",
            base_url="http://127.0.0.1:8080/api",
            key_file=root / "secrets" / "api-key",
            timeout_s=30.0,
            connect_timeout_s=2.5,
            workers=64,
            min_workers=2,
            stream_threshold_bytes=512 * 1024,
            max_requests_per_second=40.0,
            max_attempts=3,
            backoff_base_s=0.25,
            backoff_max_s=5.0,
        ),
        state=StateConfig(path=Path("/var/lib/syncd/state.db")),
        folders=(
            FolderConfig(root / "a", "/assets/photos", ("*.psd", "cache/"), True, 100.0, 1000),
            FolderConfig(root / "b", "/other", (), False, 50.0, 0),
        ),
    )
    assert isinstance(cfg.dam.timeout_s, float)
    assert [f.name for f in cfg.folders] == ["a", str(root / "b")]


def test_defaults(root: Path) -> None:
    cfg = build(minimal(), root)
    assert cfg.dam == DamConfig(
        token="abc123",
        base_url="https://api.filerobot.com",
        key_file=None,
        timeout_s=120.0,
        connect_timeout_s=10.0,
        workers=64,
        min_workers=2,
        stream_threshold_bytes=64 * 1024 * 1024,
        max_requests_per_second=0.0,
        max_attempts=6,
        backoff_base_s=0.5,
        backoff_max_s=30.0,
    )
    assert cfg.state.path == root / "home" / ".local" / "state" / "syncd" / "state.db"
    assert cfg.folders == (FolderConfig(root / "a", "/assets", (), False, 10.0, 25),)


def test_frozen(root: Path) -> None:
    cfg = build(minimal(), root)
    with pytest.raises(AttributeError):
        cfg.dam.workers = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("remote", "expected"),
    [("/", "/"), ("/assets/", "/assets"), ("//a//b///", "/a/b"), ("/a b/c", "/a b/c")],
)
def test_remote_normalised(root: Path, remote: str, expected: str) -> None:
    data = with_value(minimal(), "folders.0.remote", remote)
    assert build(data, root).folders[0].remote == expected


def test_relative_and_home_paths(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = root / "home"
    (home / "pics").mkdir(parents=True)
    (root / "a" / "link").symlink_to(root / "b")
    monkeypatch.setenv("HOME", str(home))
    data = minimal()
    data["dam"]["key_file"] = "~/api-key"
    data["state"] = {"path": "../state.db"}
    data["folders"] = [
        {"local": "~/pics", "remote": "/p"},
        {"local": "./a/../a/link", "remote": "/l"},  # symlink resolved: it is b
    ]
    cfg = build(data, root)
    assert cfg.dam.key_file == home / "api-key"
    assert cfg.state.path == root / ".." / "state.db"
    assert [f.local for f in cfg.folders] == [home / "pics", root / "b"]
    assert cfg.folders[0].name == "~/pics"


def test_relative_to_config_dir_not_cwd(
    root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    (root / "config.toml").write_text(
        '[dam]\ntoken = "t"\n[[folders]]\nlocal = "a"\nremote = "/"\n'
    )
    assert load_config(root / "config.toml").folders[0].local == root / "a"


# --- errors ----------------------------------------------------------------------------------

ERRORS: list[tuple[str, object, str, str]] = [
    # (dotted key to set, value, key named in the message, fragment of the message)
    ("dam.token", DELETE, "dam.token", "missing required key; add it under [dam]"),
    ("dam", DELETE, "dam.token", "missing required key"),
    ("dam.token", "", "dam.token", '"" is not a token; use the one in the DAM project settings'),
    ("dam.token", "abc/123", "dam.token", '"abc/123" is not a token'),
    ("dam.token", 123, "dam.token", "expected a string, got 123"),
    ("dam", "abc", "dam", 'expected a table, got "abc"; write it as [dam]'),
    (
        "dam.base_url",
        "api.filerobot.com",
        "dam.base_url",
        "is not an http(s) URL; use one like https://api.filerobot.com",
    ),
    ("dam.base_url", "ftp://host", "dam.base_url", '"ftp://host" is not an http(s) URL'),
    ("dam.base_url", "https://host/?x=1", "dam.base_url", "is not an http(s) URL"),
    ("dam.key_file", "", "dam.key_file", "must not be empty; give a path"),
    ("dam.key_file", ["a"], "dam.key_file", "expected a string, got an array"),
    ("dam.timeout_s", 0, "dam.timeout_s", "0 is out of range; use a number greater than 0"),
    ("dam.timeout_s", -1.5, "dam.timeout_s", "-1.5 is out of range"),
    ("dam.timeout_s", float("inf"), "dam.timeout_s", "inf is out of range"),
    ("dam.timeout_s", float("nan"), "dam.timeout_s", "nan is out of range"),
    ("dam.timeout_s", "120", "dam.timeout_s", 'expected a number, got "120"; remove the quotes'),
    ("dam.connect_timeout_s", 0.0, "dam.connect_timeout_s", "0.0 is out of range"),
    ("dam.workers", 0, "dam.workers", "0 is out of range; use 1 to 256"),
    ("dam.workers", 257, "dam.workers", "257 is out of range; use 1 to 256"),
    ("dam.workers", "8", "dam.workers", 'expected an integer, got "8"; remove the quotes'),
    ("dam.workers", "eight", "dam.workers", 'got "eight"; set it to an integer'),
    ("dam.workers", 8.0, "dam.workers", "expected an integer, got 8.0"),
    ("dam.stream_threshold_mb", 0, "dam.stream_threshold_mb", "greater than 0"),
    ("state.path", 5, "state.path", "expected a string, got 5"),
    ("state", [], "state", "expected a table, got an array"),
    ("sync.max_delete_percent", 101, "sync.max_delete_percent", "101 is out of range; use 0 to"),
    ("sync.max_delete_percent", -0.5, "sync.max_delete_percent", "-0.5 is out of range"),
    ("sync.max_delete_count", -1, "sync.max_delete_count", "-1 is out of range; use 0 or more"),
    ("sync.max_delete_count", 2.5, "sync.max_delete_count", "expected an integer, got 2.5"),
    ("folders", DELETE, "folders", "no folders configured; add a [[folders]] entry"),
    ("folders", [], "folders", "no folders configured"),
    ("folders", (), "folders", "no folders configured"),
    ("folders", {"local": "a"}, "folders", "got a table; write each entry as [[folders]]"),
    ("folders.0", "a", "folders[0]", 'expected a table, got "a"; write it as [[folders]]'),
    ("folders.0.local", DELETE, "folders[0].local", "missing required key"),
    ("folders.0.remote", DELETE, "folders[0].remote", "missing required key"),
    ("folders.0.local", "", "folders[0].local", "must not be empty"),
    ("folders.0.local", "missing", "folders[0].local", '(from "missing") does not exist'),
    ("folders.0.local", "a/file.txt", "folders[0].local", "is not a directory"),
    (
        "folders.0.remote",
        "assets",
        "folders[0].remote",
        """must start with '/'; write "/assets\"""",
    ),
    ("folders.0.remote", "", "folders[0].remote", "must start with '/'"),
    ("folders.0.remote", "/a/../b", "folders[0].remote", "'.' or '..' segment"),
    ("folders.0.remote", "/a/./b", "folders[0].remote", "'.' or '..' segment"),
    ("folders.0.exclude", "*.psd", "folders[0].exclude", 'expected an array, got "*.psd"'),
    ("folders.0.exclude", ["ok", 3], "folders[0].exclude[1]", "expected a pattern, got 3"),
    ("folders.0.exclude", [" "], "folders[0].exclude[0]", 'expected a pattern, got " "'),
    ("folders.0.delete_unknown", "true", "folders[0].delete_unknown", "remove the quotes"),
    ("folders.0.delete_unknown", 1, "folders[0].delete_unknown", "expected true or false"),
    ("folders.0.max_delete_percent", 200, "folders[0].max_delete_percent", "200 is out of"),
    ("folders.0.max_delete_count", True, "folders[0].max_delete_count", "got true"),
]


@pytest.mark.parametrize(("dotted", "value", "key", "fragment"), ERRORS)
def test_errors(root: Path, dotted: str, value: object, key: str, fragment: str) -> None:
    (root / "a" / "file.txt").write_text("x")
    message = config_error(with_value(minimal(), dotted, value), root)
    assert f": {key}: " in message
    assert fragment in message


@pytest.mark.parametrize(
    ("dotted", "key"),
    [
        ("dam.workers", "dam.workers"),
        ("dam.timeout_s", "dam.timeout_s"),
        ("sync.max_delete_count", "sync.max_delete_count"),
        ("folders.0.max_delete_count", "folders[0].max_delete_count"),
        ("folders.0.max_delete_percent", "folders[0].max_delete_percent"),
    ],
)
def test_bool_is_not_a_number(root: Path, dotted: str, key: str) -> None:
    message = config_error(with_value(minimal(), dotted, True), root)
    assert f": {key}: expected a" in message
    assert "got true" in message


@pytest.mark.parametrize(
    ("dotted", "key", "hint"),
    [
        ("dam.tokn", "dam.tokn", "did you mean 'token'?"),
        ("dam.worker", "dam.worker", "did you mean 'workers'?"),
        ("dam.keyfile", "dam.keyfile", "did you mean 'key_file'?"),
        ("folder", "folder", "did you mean 'folders'?"),
        ("sate", "sate", "did you mean 'state'?"),
        ("sync.max_delete_percnt", "sync.max_delete_percnt", "did you mean 'max_delete_percent'?"),
        ("folders.0.remot", "folders[0].remot", "did you mean 'remote'?"),
        ("folders.0.excludes", "folders[0].excludes", "did you mean 'exclude'?"),
        # a key written after [[folders]] lands in that table: say where it belongs
        ("folders.0.workers", "folders[0].workers", "it belongs under [dam]"),
        ("workers", "workers", "it belongs under [dam]"),
        ("dam.zzz", "dam.zzz", "remove it (known keys: token, base_url,"),
    ],
)
def test_unknown_keys(root: Path, dotted: str, key: str, hint: str) -> None:
    message = config_error(with_value(minimal(), dotted, 1), root)
    assert f": {key}: unknown key; {hint}" in message


@pytest.mark.parametrize("name", ["key", "api_key", "API_KEY", "apikey", "secret"])
@pytest.mark.parametrize("table", ["dam", "", "folders.0"])
def test_inline_api_key_refused(root: Path, table: str, name: str) -> None:
    dotted = f"{table}.{name}" if table else name
    message = config_error(with_value(minimal(), dotted, SECRET), root)
    assert "put it in $SYNCD_API_KEY or in the file named by dam.key_file" in message
    assert SECRET not in message


OVERLAPS = [
    # (second local, second remote, key, fragment); the first entry is local "a", remote "/x"
    ("a", "/y", "folders[1].local", "is the same as folders[0].local"),
    ("a/", "/y", "folders[1].local", "is the same as folders[0].local"),
    ("a/sub", "/y", "folders[1].local", "is inside folders[0].local"),
    (".", "/y", "folders[1].local", "contains folders[0].local"),
    ("b/link-to-a", "/y", "folders[1].local", "is the same as folders[0].local"),
    ("b", "/x", "folders[1].remote", "/x is the same as folders[0].remote (/x)"),
    ("b", "/x/", "folders[1].remote", "is the same as folders[0].remote"),
    ("b", "/x/y", "folders[1].remote", "/x/y is inside folders[0].remote (/x)"),
    ("b", "/", "folders[1].remote", "/ contains folders[0].remote (/x)"),
]


@pytest.mark.parametrize(("local", "remote", "key", "fragment"), OVERLAPS)
def test_overlapping_folders(root: Path, local: str, remote: str, key: str, fragment: str) -> None:
    (root / "a" / "sub").mkdir()
    (root / "b" / "link-to-a").symlink_to(root / "a")
    data = minimal()
    data["folders"] = [{"local": "a", "remote": "/x"}, {"local": local, "remote": remote}]
    message = config_error(data, root)
    assert f": {key}: " in message
    assert fragment in message
    assert message.endswith("; give each [[folders]] entry its own, separate root")


@pytest.mark.parametrize("remote", ["/xy", "/y/x"])
def test_similar_remotes_do_not_overlap(root: Path, remote: str) -> None:
    data = minimal()
    data["folders"] = [{"local": "a", "remote": "/x"}, {"local": "b", "remote": remote}]
    assert len(build(data, root).folders) == 2


def test_newlines_in_values_stay_on_one_line(root: Path) -> None:
    message = config_error(with_value(minimal(), "folders.0.local", "no\nsuch"), root)
    assert "no\\nsuch" in message


# --- load_config: reading and parsing --------------------------------------------------------


def test_load_config(root: Path) -> None:
    path = root / "config.toml"
    path.write_text('[dam]\ntoken = "abc123"\n\n[[folders]]\nlocal = "a"\nremote = "/assets"\n')
    assert load_config(path, env={"STATE_DIRECTORY": "/var/lib/syncd"}) == Config(
        source=path,
        dam=build(minimal(), root).dam,
        state=StateConfig(Path("/var/lib/syncd/state.db")),
        folders=(FolderConfig(root / "a", "/assets", (), False, 10.0, 25),),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[dam]\ntoken = "abc"\nworkers == 8\n',
            ": line 3, column 10: invalid TOML: Invalid value; fix the syntax there",
        ),
        ('[dam]\ntoken = "abc\n', ": line 2, column 13: invalid TOML: "),
        ('[dam]\ntoken = "a"\ntoken = "b"\n', ": line 3, column "),
        ("[dam", ": end of file: invalid TOML: "),
        # a key written after [[folders]] belongs to that table, which TOML users trip over
        (
            '[dam]\ntoken = "abc"\n[[folders]]\nlocal = "a"\nremote = "/x"\nworkers = 8\n',
            ": folders[0].workers: unknown key; it belongs under [dam]",
        ),
    ],
)
def test_toml_syntax_errors(root: Path, text: str, fragment: str) -> None:
    path = root / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert "\n" not in message


def test_not_utf8(root: Path) -> None:
    path = root / "config.toml"
    path.write_bytes(b'[dam]\ntoken = "\xff"\n')
    with pytest.raises(ConfigError, match=r": byte 15: not UTF-8; save the file as UTF-8$"):
        load_config(path)


def test_missing_file(root: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(root / "nope.toml")
    assert str(info.value) == (
        f"{root / 'nope.toml'}: file not found; create it from config.example.toml or point "
        "$SYNCD_CONFIG at your config file"
    )


def test_directory_instead_of_file(root: Path) -> None:
    with pytest.raises(ConfigError, match=r": is a directory; give the path of the config file$"):
        load_config(root)


def test_unreadable_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = root / "config.toml"
    path.write_text("")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: cannot read the file (Permission denied); make it readable by syncd's user"
    )


# --- the shipped example ---------------------------------------------------------------------


def example_text(root: Path, *, uncomment: bool) -> str:
    """The example with its local roots pointed into `root` (and optional settings enabled)."""
    text = EXAMPLE.read_text()
    roots = iter(["a", "b"])
    text = re.sub(r'(?m)^local = ".*"$', lambda _: f'local = "{next(roots)}"', text)
    if uncomment:  # `#key = value` lines are optional settings; they must be valid too
        text = re.sub(r"(?m)^#(\w+ = )", r"\1", text)
    return text


@pytest.mark.parametrize("uncomment", [False, True])
def test_example_config_loads(root: Path, uncomment: bool) -> None:
    path = root / "config.toml"
    path.write_text(example_text(root, uncomment=uncomment))
    cfg = load_config(path, env={"HOME": str(root)})
    assert cfg.dam.token == "abc123"
    assert cfg.dam.key_file == Path("/etc/syncd/api-key")
    assert [(f.local, f.remote) for f in cfg.folders] == [(root / "a", "/assets")]
    assert cfg.folders[0].exclude == ("*.psd", "cache/")


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for section, schema in config._SECTIONS.items():
        assert f"[{section}]" in text
        for key in schema:
            assert re.search(rf"(?m)^#?{key} = ", text), f"{section}.{key} is not in the example"


def test_example_shows_the_real_defaults(root: Path) -> None:
    path = root / "config.toml"
    path.write_text(example_text(root, uncomment=True))
    default = build(minimal(), root)
    cfg = load_config(path, env={"HOME": str(root / "home")})
    assert cfg.dam == dataclasses.replace(default.dam, key_file=Path("/etc/syncd/api-key"))
    assert cfg.state.path == Path("/var/lib/syncd/state.db")
    assert cfg.folders[0].max_delete_count == default.folders[0].max_delete_count
    assert cfg.folders[0].max_delete_percent == default.folders[0].max_delete_percent
    assert cfg.folders[0].delete_unknown is False


# --- default paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/syncd"}, "/var/lib/syncd/state.db"),
        ({"STATE_DIRECTORY": "/var/lib/syncd:/var/lib/other"}, "/var/lib/syncd/state.db"),
        ({"STATE_DIRECTORY": "/s", "XDG_STATE_HOME": "/x"}, "/s/state.db"),
        ({"STATE_DIRECTORY": "", "XDG_STATE_HOME": "/x"}, "/x/syncd/state.db"),
        ({"XDG_STATE_HOME": "/x/state"}, "/x/state/syncd/state.db"),
        ({"XDG_STATE_HOME": "relative"}, "/home/u/.local/state/syncd/state.db"),
        ({"XDG_STATE_HOME": ""}, "/home/u/.local/state/syncd/state.db"),
        ({}, "/home/u/.local/state/syncd/state.db"),
    ],
)
def test_default_state_path(env: dict[str, str], expected: str) -> None:
    assert default_state_path({"HOME": "/home/u", **env}) == Path(expected)


def test_default_state_path_uses_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/run/state")
    assert default_state_path() == Path("/run/state/state.db")


def test_state_path_setting_beats_environment(root: Path) -> None:
    data = with_value(minimal(), "state.path", "/data/s.db")
    cfg = config_from_dict(data, root / "c.toml", env={"STATE_DIRECTORY": "/var/lib/syncd"})
    assert cfg.state.path == Path("/data/s.db")


@pytest.mark.parametrize(
    ("env", "system_exists", "expected"),
    [
        ({"SYNCD_CONFIG": "/opt/syncd.toml"}, True, "/opt/syncd.toml"),
        ({"SYNCD_CONFIG": "~/s.toml"}, False, "/home/u/s.toml"),
        ({"SYNCD_CONFIG": ""}, True, "SYSTEM"),
        ({}, True, "SYSTEM"),
        ({}, False, "/home/u/.config/syncd/config.toml"),
        ({"XDG_CONFIG_HOME": "/xdg"}, False, "/xdg/syncd/config.toml"),
        ({"XDG_CONFIG_HOME": "rel"}, False, "/home/u/.config/syncd/config.toml"),
    ],
)
def test_default_config_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    system_exists: bool,
    expected: str,
) -> None:
    system = tmp_path / "etc" / "config.toml"
    if system_exists:
        system.parent.mkdir()
        system.write_text("")
    monkeypatch.setattr(paths, "SYSTEM_CONFIG_PATH", system)
    monkeypatch.setenv("HOME", "/home/u")  # for "~" in $SYNCD_CONFIG
    got = default_config_path({"HOME": "/home/u", **env})
    assert got == (system if expected == "SYSTEM" else Path(expected))


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.filerobot.com", True),
        ("http://127.0.0.1:8750", True),
        ("http://localhost:8750", True),
        ("http://api.filerobot.com", False),
        ("http://10.0.0.5", False),
        # Loopback is decided on the parsed address, not on how the host name begins.
        ("http://127.255.0.9", True),
        ("http://LOCALHOST:8750", True),
        ("http://[::1]:8750", True),
        ("http://[::1]", True),
        ("http://127.evil.example", False),
        ("http://127.0.0.1.evil.example:8750", False),
        ("http://localhost.evil.example", False),
        ("http://evil-localhost", False),
        ("http://127.1", False),  # short and numeric spellings are refused, not guessed
        ("http://2130706433", False),
        ("http://0x7f.0.0.1", False),
        ("http://0.0.0.0:8750", False),
        ("http://[::]:8750", False),
        ("http://[fe80::1]:8750", False),
    ],
)
def test_plain_http_only_on_loopback(root: Path, url: str, ok: bool) -> None:
    data = minimal()
    data["dam"]["base_url"] = url
    if ok:
        assert config_from_dict(data, root / "c.toml").dam.base_url == url
    else:
        with pytest.raises(ConfigError, match="dam.base_url: .*use https"):
            config_from_dict(data, root / "c.toml")


@pytest.mark.parametrize("url", ["http://[::1", "https://[::1:8750", "http://127.0.0.1:http"])
def test_unparsable_base_url_is_a_config_error(root: Path, url: str) -> None:
    data = minimal()
    data["dam"]["base_url"] = url
    with pytest.raises(ConfigError, match=r"dam\.base_url: .* is not an http\(s\) URL; use one"):
        config_from_dict(data, root / "c.toml")


# --- dam.ca_bundle, and no way to turn TLS verification off ----------------------------------


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A self-signed CA certificate, PEM."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "2", "-subj", "/CN=test CA", "-addext", "basicConstraints=CA:TRUE"]
        + ["-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")],
        check=True,
        capture_output=True,
    )
    return (d / "ca.pem").read_bytes()


def test_ca_bundle_relative_to_the_config_file(root: Path, ca_pem: bytes) -> None:
    (root / "certs").mkdir()
    (root / "certs" / "corp.pem").write_bytes(ca_pem)
    data = with_value(minimal(), "dam.ca_bundle", "certs/corp.pem")
    assert build(data, root).dam.ca_bundle == root / "certs" / "corp.pem"
    data = with_value(minimal(), "dam.ca_bundle", str(root / "certs" / "corp.pem"))
    assert build(data, root).dam.ca_bundle == root / "certs" / "corp.pem"


def test_ca_bundle_default_is_none(root: Path) -> None:
    assert build(minimal(), root).dam.ca_bundle is None
    # `#ca_bundle = ""` in the example shows the default; uncommented, it means the same.
    assert build(with_value(minimal(), "dam.ca_bundle", ""), root).dam.ca_bundle is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("missing.pem", '{root}/missing.pem (from "missing.pem") does not exist; fix the path'),
        ("a", '{root}/a (from "a") is not a file; give a PEM file of CA certificates'),
        ("{root}/a", "{root}/a is not a file; give a PEM file of CA certificates"),
        (
            "not.pem",
            '{root}/not.pem (from "not.pem") holds no usable CA certificate (NO_CERTIFICATE_OR',
        ),
        (5, "expected a string, got 5; set it to a string"),
    ],
)
def test_ca_bundle_errors(root: Path, value: object, fragment: str) -> None:
    (root / "not.pem").write_text("this is not a certificate\n")
    if isinstance(value, str):
        value = value.format(root=root)
    message = config_error(with_value(minimal(), "dam.ca_bundle", value), root)
    assert f": dam.ca_bundle: {fragment.format(root=root)}" in message


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_ca_bundle(root: Path, ca_pem: bytes) -> None:
    bundle = root / "ca.pem"
    bundle.write_bytes(ca_pem)
    bundle.chmod(0)
    message = config_error(with_value(minimal(), "dam.ca_bundle", "ca.pem"), root)
    assert ": dam.ca_bundle: " in message
    assert "Permission denied; make it readable by syncd's user" in message


@pytest.mark.parametrize(
    "name", ["verify_tls", "insecure", "ssl_verify", "verify-ssl", "VERIFY_SSL", "tls_verify"]
)
@pytest.mark.parametrize("table", ["dam", ""])
def test_turning_tls_verification_off_is_refused(root: Path, table: str, name: str) -> None:
    dotted = f"{table}.{name}" if table else name
    message = config_error(with_value(minimal(), dotted, False), root)
    assert message.endswith(
        f": {dotted}: TLS verification cannot be turned off; use dam.ca_bundle for a private CA"
        " or a TLS-inspecting proxy"
    )


# --- [metrics] -------------------------------------------------------------------------------


def test_metrics_off_by_default(root: Path) -> None:
    assert build(minimal(), root).metrics == MetricsConfig(listen=None)
    assert build({**minimal(), "metrics": {}}, root).metrics == MetricsConfig(listen=None)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9150", ("127.0.0.1", 9150)),
        ("[::1]:9150", ("::1", 9150)),
        ("localhost:9150", ("localhost", 9150)),
        ("metrics-1.internal.example:1", ("metrics-1.internal.example", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_metrics_listen(root: Path, listen: str, expected: tuple[str, int]) -> None:
    data = with_value(minimal(), "metrics.listen", listen)
    assert build(data, root).metrics == MetricsConfig(listen=expected)


LISTEN_ERRORS = [
    ("127.0.0.1", '"127.0.0.1" is not HOST:PORT; use HOST:PORT, like "127.0.0.1:9150"'),
    ("localhost", '"localhost" is not HOST:PORT'),
    (":9150", '":9150" is not HOST:PORT'),
    ("127.0.0.1:0", '"127.0.0.1:0": the port must be a number from 1 to 65535; use HOST:PORT'),
    ("127.0.0.1:70000", '"127.0.0.1:70000": the port must be a number from 1 to 65535'),
    ("127.0.0.1:", '"127.0.0.1:": the port must be a number from 1 to 65535'),
    ("127.0.0.1:http", '"127.0.0.1:http": the port must be a number from 1 to 65535'),
    ("127.0.0.1:-1", '"127.0.0.1:-1": the port must be a number from 1 to 65535'),
    ("[::1]", '"[::1]" is not HOST:PORT'),
    ("[::1]9150", '"[::1]9150" is not HOST:PORT'),
    ("[::1", '"[::1" is not HOST:PORT'),
    ("[::1]:", '"[::1]:": the port must be a number from 1 to 65535'),
    ("::1:9150", '"::1:9150": write an IPv6 address in brackets; use HOST:PORT'),
    ("[nope]:9150", '"[nope]:9150": "nope" is not an IPv6 address'),
    ("256.1.1.1:80", '"256.1.1.1:80": 256.1.1.1 is not an IPv4 address'),
    ("my host:80", '"my host:80": "my host" is not a hostname'),
    ("-bad.example:80", '"-bad.example:80": "-bad.example" is not a hostname'),
    (9150, "expected a string, got 9150; set it to a string"),
    (["127.0.0.1", 9150], "expected a string, got an array"),
]


@pytest.mark.parametrize(("listen", "fragment"), LISTEN_ERRORS)
def test_metrics_listen_errors(root: Path, listen: object, fragment: str) -> None:
    message = config_error(with_value(minimal(), "metrics.listen", listen), root)
    assert f": metrics.listen: {fragment}" in message


@pytest.mark.parametrize(
    ("dotted", "value", "key", "fragment"),
    [
        ("metrics", "127.0.0.1:9150", "metrics", 'expected a table, got "127.0.0.1:9150"'),
        ("metrics.listn", "x", "metrics.listn", "unknown key; did you mean 'listen'?"),
        ("folders.0.listen", "x", "folders[0].listen", "unknown key; it belongs under [metrics]"),
    ],
)
def test_metrics_table_errors(
    root: Path, dotted: str, value: object, key: str, fragment: str
) -> None:
    message = config_error(with_value(minimal(), dotted, value), root)
    assert f": {key}: {fragment}" in message


def test_example_documents_metrics_and_ca_bundle(root: Path) -> None:
    text = EXAMPLE.read_text()
    assert "\n[metrics]\n" in text
    assert "http://HOST:PORT/metrics" in text
    assert "loopback" in text
    path = root / "config.toml"
    path.write_text(example_text(root, uncomment=True))
    cfg = load_config(path, env={"HOME": str(root)})
    assert cfg.metrics.listen == ("127.0.0.1", 9150)
    assert cfg.dam.ca_bundle is None


def test_min_workers_above_workers_names_both_keys(root: Path) -> None:
    data = minimal()
    data["dam"] = {**data["dam"], "workers": 8, "min_workers": 16}
    with pytest.raises(ConfigError, match=r"dam\.min_workers: 16 is more than dam\.workers \(8\)"):
        build(data, root)


def test_fleet_defaults_to_off(root):
    fleet = build(minimal(), root).fleet
    assert fleet.redis_url is None
    assert fleet.key_prefix == ""


@pytest.mark.parametrize(
    "url",
    [
        "redis://10.0.0.5:6379/0",
        "rediss://:pw@redis.internal:6380/2",
        "redis://user:pw@[::1]:6379",
        "unix:///run/redis/redis.sock",
    ],
)
def test_fleet_redis_urls_accepted(root, url):
    config = build(with_value(minimal(), "fleet.redis_url", url), root)
    assert config.fleet.redis_url == url
    assert url not in repr(config)  # it may hold a password


@pytest.mark.parametrize(
    "url",
    ["http://redis:6379", "redis://", "redis://host:99999/0", "redis://host/zero", "unix://"],
)
def test_bad_fleet_redis_urls_are_refused_without_showing_the_password(root, url):
    url = url.replace("://", "://:s3cret-pass@", 1) if url != "unix://" else url
    message = config_error(with_value(minimal(), "fleet.redis_url", url), root)
    assert "fleet.redis_url: " in message
    assert "is not a Redis URL" in message
    assert "redis://host:6379/0" in message  # the fix shows the form
    assert "s3cret-pass" not in message


def test_fleet_settings_without_a_redis_url_are_refused(root):
    data = with_value(minimal(), "fleet.key_prefix", "studio")
    message = config_error(data, root)
    assert "fleet.key_prefix: has no effect without fleet.redis_url" in message


def test_a_fleet_key_prefix_with_spaces_is_refused(root):
    data = with_value(minimal(), "fleet.redis_url", "redis://r:6379/0")
    message = config_error(with_value(data, "fleet.key_prefix", "two words"), root)
    assert 'fleet.key_prefix: "two words" is not a usable key prefix' in message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://:ab/cd:ef@host:6379/0", "is not a Redis URL"),  # a "/" in the password
        ("redis://s3cret-pass@host:6379/0", "has a user name and no password"),
        ("redis://:s3cret-pass@host:6379/0?socket_timeout=60", "has a query string"),
    ],
)
def test_fleet_url_mistakes_are_named_without_the_password(root, url, problem):
    message = config_error(with_value(minimal(), "fleet.redis_url", url), root)
    assert problem in message
    for secret in ("s3cret-pass", "ab/cd", "cd:ef"):
        assert secret not in message
