"""Ignore rules shared by the initial scan and the live watcher: built-in names of files that are
not finished assets (editor swaps, partial downloads, lock files, OS clutter, VCS folders) plus
the user's gitignore-style `exclude` patterns. One `SyncdFilter` per folder root, so the scan and
the watcher can never disagree about what is synced."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pathspec import GitIgnoreSpec
from watchfiles import BaseFilter, Change

from syncd.errors import ConfigError

__all__ = ["SyncdFilter"]

# pathspec names a group in every pattern regex; a union of several regexes must not repeat it.
_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_]\w*>")


class SyncdFilter(BaseFilter):
    """Decides which entries under one folder root are never synced.

    Built-in rules match an entry's own name (any path component), whatever its type. User
    `exclude` patterns have `.gitignore` semantics relative to the root: `cache/` matches a
    directory anywhere, `/cache/` only at the root, `*.psd` anywhere, `!keep.psd` re-includes,
    `**` spans directories. Built-ins cannot be re-included.

    Args:
        root: the local folder root the paths are relative to.
        exclude: gitignore-style patterns from the config.

    Raises:
        ConfigError: an exclude pattern is invalid.
    """

    __slots__ = ("_builtin", "_builtin_name", "_prefixes", "_quick", "_spec", "exclude", "root")

    ignore_dirs: Sequence[str] = (
        # version control and tool metadata
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        "CVS",
        "_darcs",
        # Syncthing markers and versions, Synology thumbnails, rsync --delay-updates staging
        ".stfolder",
        ".stversions",
        "@eaDir",
        ".~tmp~",
        # trash and volume bookkeeping (macOS, Windows, ext4): never assets, often unreadable
        ".Trashes",
        ".Spotlight-V100",
        ".fseventsd",
        ".TemporaryItems",
        ".DocumentRevisions-V100",
        "System Volume Information",
        "lost+found",
    )
    """Exact names ignored wherever they appear (a `.git` *file* in a worktree too)."""

    ignore_entity_patterns: Sequence[str] = (
        # editor swap and backup files; vim counts its swap suffix down from .swp to .swa
        r".*\.sw[pox]",
        r"\..*\.sw[a-p]",
        r".*~",
        r"\.#.*",
        r"#.*#",
        r"4913",  # vim's "can I write here" probe file
        r".*___jb_(?:tmp|old)___",  # JetBrains safe-write
        r".*\.kate-swp",
        # partial downloads and temporaries; Windows tools write these upper case
        r"(?i:.*\.(?:part|partial|crdownload|download|tmp|temp))",
        r"\..+\.[A-Za-z0-9]{6}",  # rsync's in-flight copy: .<name>.XXXXXX
        r"\.fuse_hidden[0-9A-Fa-f]+",  # FUSE: deleted while still open
        r"\.nfs[0-9A-Fa-f]{16,}",  # NFS silly-rename: deleted while still open
        # lock files: Office owner files, LibreOffice locks
        r"~\$.*",
        r"\.~lock\..*#",
        # OS clutter: Finder, AppleDouble, Explorer, KDE Dolphin, custom folder icons
        r"\.DS_Store",
        r"\._.*",
        r"(?i:thumbs\.db|ehthumbs\.db|desktop\.ini|\$RECYCLE\.BIN)",
        r"\.directory",
        r"Icon\r",
        r"\.Trash(?:-.*)?",
    )
    """Regexes that must match an entry's *whole* name (they are joined and `fullmatch`ed)."""

    def __init__(self, root: Path, exclude: Sequence[str] = ()) -> None:
        if isinstance(exclude, str):  # a bare string would be split into one-letter patterns
            raise TypeError("exclude must be a sequence of patterns, not a string")
        super().__init__()
        # BaseFilter compiled these for `search`; ours describe whole names, newlines included
        self._ignore_entity_regexes = tuple(
            re.compile(p, re.DOTALL) for p in self.ignore_entity_patterns
        )
        self.root = Path(root)
        self.exclude = tuple(exclude)
        # One alternation, one fullmatch per entry: the scan calls this 100,000 times.
        names = [re.escape(d) for d in self.ignore_dirs]
        alternation = "|".join(f"(?:{p})" for p in [*names, *self.ignore_entity_patterns])
        builtin = re.compile(alternation, re.DOTALL)
        self._builtin: Callable[[str, int], re.Match[str] | None] = builtin.fullmatch
        self._builtin_name: Callable[[str], re.Match[str] | None] = builtin.fullmatch
        self._spec = _compile_excludes(self.exclude)
        self._quick = _quick_reject(self._spec)
        # watchfiles reports paths under the root as it was given; accept the resolved form too
        absolute = os.path.abspath(self.root)
        self._prefixes = tuple(
            dict.fromkeys(p.rstrip(os.sep) + os.sep for p in (absolute, os.path.realpath(absolute)))
        )

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """The scan API: is this one entry ignored?

        Only the entry itself is tested: a top-down walk has already pruned ignored parents.
        Use `path_ignored` when the parents have not been checked.

        Args:
            rel: the path relative to the root, `/`-separated, no leading or trailing `/`.
            is_dir: whether the entry is a directory (symlinks are not directories, as in git).
        """
        if self._builtin(rel, rel.rfind("/") + 1) is not None:
            return True
        return self._quick is not None and self.excluded(rel, is_dir)

    def entry_tests(self) -> tuple[Callable[[str], object], Callable[[str, bool], bool] | None]:
        """`ignored` in the two parts a walk can call directly, one entry of a directory at
        a time: the built-in rules, which look at the bare name (a match object when it is
        ignored), and the excludes, which look at the path (None when none can match)."""
        return self._builtin_name, (self.excluded if self._quick is not None else None)

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether the user's `exclude` patterns ignore this entry itself."""
        if self._quick is None:
            return False
        path = rel + "/" if is_dir else rel
        # Most paths match no pattern at all; only those need git's last-match-wins resolution.
        if not self._quick(path):
            return False
        return self._spec.check_file(path).include is True

    def path_ignored(self, rel: str, is_dir: bool) -> bool:
        """Is `rel` ignored, itself or because one of its parent directories is?

        This is what a top-down scan decides, so the watcher and re-checks use it. A file
        re-included by `!pattern` inside an excluded directory stays ignored, as in git.
        """
        end = rel.find("/")
        while end != -1:
            if self.ignored(rel[:end], True):
                return True
            end = rel.find("/", end + 1)
        return self.ignored(rel, is_dir)

    def relative(self, path: str) -> str | None:
        """`path` relative to the root with `/` separators, or None when it is not strictly
        inside the root or cannot be a synced name (not valid UTF-8)."""
        path = os.path.abspath(path)
        for prefix in self._prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                rel = path[len(prefix) :]
                if os.sep != "/":
                    rel = rel.replace(os.sep, "/")
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    return None
                return rel
        return None

    def __call__(self, change: Change, path: str) -> bool:
        """The watchfiles API: True to keep the event.

        No I/O happens here (a deleted path cannot be stat-ed anyway), so the entry's type is
        unknown: it is dropped only when ignored both as a file and as a directory. Events are
        hints; the consumer re-stats the path and re-checks it with `path_ignored`.
        """
        rel = self.relative(path)
        if rel is None:
            # The root's own deletion is kept: its watcher must then be armed again.
            return change == Change.deleted and os.path.abspath(path) + os.sep in self._prefixes
        return not (self.path_ignored(rel, False) and self.path_ignored(rel, True))

    def reason(self, rel: str, is_dir: bool) -> str | None:
        """Which rule ignores `rel` (or one of its parents), for debug logs; None if kept."""
        parts = rel.split("/")
        for i in range(len(parts)):
            here = "/".join(parts[: i + 1])
            here_is_dir = is_dir if i == len(parts) - 1 else True
            why = self._entry_reason(here, parts[i], here_is_dir)
            if why is not None:
                return why if here == rel else f"{why} on parent {here}/"
        return None

    def _entry_reason(self, rel: str, name: str, is_dir: bool) -> str | None:
        if name in self._ignore_dirs:
            return f"built-in name {name!r}"
        for regex in self._ignore_entity_regexes:
            if regex.fullmatch(name):
                return f"built-in pattern {regex.pattern!r}"
        path = rel + "/" if is_dir else rel
        result = self._spec.check_file(path)
        if result.include is True and result.index is not None:
            return f"exclude pattern {self._spec.patterns[result.index].pattern!r}"
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, exclude={self.exclude!r})"


def _compile_excludes(exclude: Sequence[str]) -> GitIgnoreSpec:
    for pattern in exclude:  # one by one, so the error names the bad pattern
        try:
            GitIgnoreSpec.from_lines([pattern])
        except (ValueError, re.error) as exc:
            raise ConfigError(f"exclude pattern {pattern!r} is invalid: {exc}") from exc
    return GitIgnoreSpec.from_lines(exclude)


def _quick_reject(spec: GitIgnoreSpec) -> Callable[[str], object] | None:
    """One regex that matches whenever at least one excluding pattern of `spec` matches.

    pathspec tests every pattern in Python (about 0.4 µs each); the union answers the common
    "no pattern matches" case in one C-level search. When it does match, pathspec decides.
    Returns None when no pattern excludes anything (nothing can be ignored).
    """
    if not any(p.include for p in spec.patterns):
        return None
    sources = []
    for pattern in spec.patterns:
        regex = getattr(pattern, "regex", None)
        if not pattern.include or regex is None:
            # comments and blank lines; `!negations` only matter once an exclude has matched
            continue
        if not isinstance(regex, re.Pattern) or regex.flags != re.UNICODE:
            return spec.match_file  # unexpected shape: always ask pathspec (slow but exact)
        sources.append(_NAMED_GROUP.sub("(?:", regex.pattern))
    try:
        return re.compile("|".join(f"(?:{s})" for s in sources)).search
    except re.error:
        return spec.match_file
