"""Verification of published split files: MD5 and row count of every split file in one streaming pass,
compared with the published values of ``registry.py``, plus the header each file must have. Results are
cached by (path, size, mtime) so ``ctrbench data list`` can show what was verified without re-hashing.
``locate`` finds a dataset's files (its config's paths, else the registry's layout under ``data_root``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from ..util import atomic_write
from . import registry

HASH_BLOCK_BYTES = 16 * 1024 * 1024


@dataclass
class FileCheck:
    split: str
    path: str
    status: str  # ok | mismatch | missing | present | bad-header
    rows: int | None = None
    expected_rows: int | None = None
    md5: str | None = None
    expected_md5: str | None = None
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "bad-header")


def digest(path: str) -> tuple[str, int]:
    """(md5 hex, data rows = lines - 1 header) of a file, streaming."""
    md5 = hashlib.md5()
    lines = 0
    last = b""
    with open(path, "rb") as fd:
        while True:
            block = fd.read(HASH_BLOCK_BYTES)
            if not block:
                break
            md5.update(block)
            lines += block.count(b"\n")
            last = block[-1:]
    if last and last != b"\n":
        lines += 1
    return md5.hexdigest(), max(lines - 1, 0)


def cache_path() -> str:
    root = os.environ.get("CTRBENCH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ctrbench")
    return os.path.join(root, "verified.json")


def _load_cache() -> dict:
    try:
        with open(cache_path()) as fd:
            return json.load(fd)
    except (OSError, json.JSONDecodeError):
        return {}


def _save_cache(cache: dict) -> None:
    path = cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps(cache, indent=1, sort_keys=True))
    except OSError:
        pass  # the cache only saves time


def _stamp(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def cached_digest(path: str) -> tuple[str, int] | None:
    entry = _load_cache().get(os.path.abspath(path))
    if entry and entry.get("stamp") == _stamp(path):
        return entry["md5"], entry["rows"]
    return None


def _digest_cached(path: str, use_cache: bool) -> tuple[str, int]:
    if use_cache:
        hit = cached_digest(path)
        if hit:
            return hit
    md5, rows = digest(path)
    cache = _load_cache()
    cache[os.path.abspath(path)] = {"stamp": _stamp(path), "md5": md5, "rows": rows}
    _save_cache(cache)
    return md5, rows


def read_header(path: str) -> list[str]:
    with open(path, "rb") as fd:
        line = fd.readline(1 << 20)
    return line.decode("utf-8", "replace").rstrip("\r\n").split(",")


def _header_problem(path: str, expected: tuple[str, ...]) -> str:
    got = read_header(path)
    if tuple(got) == expected:
        return ""
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if missing or extra:
        detail = (
            (f"missing {', '.join(missing[:5])}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {', '.join(extra[:5])}" if extra else "")
        )
    else:
        detail = "columns in another order"
    return f"header is not {','.join(expected[:4])},... ({detail})"


def check_file(
    spec: registry.SplitFile, path: str, split_set: registry.SplitSet, use_cache: bool = True
) -> FileCheck:
    check = FileCheck(spec.split, path, "present", expected_rows=spec.rows, expected_md5=spec.md5)
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".csv"))
        if not files:
            check.status, check.message = "missing", "folder has no .csv files"
            return check
        for name in files:
            problem = _header_problem(os.path.join(path, name), split_set.header)
            if problem:
                check.status, check.message = "bad-header", f"{name}: {problem}"
                return check
        check.message = f"{len(files)} files; no published checksum"
        return check
    if not os.path.isfile(path):
        check.status = "missing"
        return check
    problem = _header_problem(path, split_set.header)
    if problem:
        check.status, check.message = "bad-header", problem
        return check
    if spec.md5 is None and spec.rows is None:
        check.message = "no published checksum"
        return check
    check.md5, check.rows = _digest_cached(path, use_cache)
    if spec.md5 is not None:
        if check.md5 == spec.md5:
            check.status = "ok"
        else:
            check.status = "mismatch"
            hint = ""
            if spec.rows is not None and check.rows != spec.rows:
                hint = f"; {check.rows:,} rows instead of {spec.rows:,}" + (
                    " (truncated download?)" if check.rows < spec.rows else ""
                )
            elif split_set.line_end == "crlf":
                hint = "; same row count: line ends must stay CRLF as published"
            check.message = f"md5 {check.md5} != published {spec.md5}{hint}"
    elif check.rows == spec.rows:
        check.status, check.message = "ok", "row count matches (no published checksum)"
    else:
        check.status = "mismatch"
        check.message = f"{check.rows:,} rows instead of {spec.rows:,}"
    return check


def locate(
    name: str, config_paths: dict[str, str | None], data_root: str
) -> tuple[registry.SplitSet | None, dict[str, str]]:
    """The split set behind a dataset id and where each of its files is: the dataset config's path
    for it (matched by file name, so a config training on ``Frappe_x1/valid.csv`` counts), else the
    registry's path under ``data_root``. Config ids outside the registry match by their paths."""
    info, split_set = registry.resolve(name)
    if split_set is None:
        return registry.match_paths(config_paths)
    splits = info.splits if info is not None else registry.SPLITS_ORDER
    located = {}
    for split in splits:
        spec = split_set.file(split)
        if spec is None:
            continue
        match = [
            p
            for p in config_paths.values()
            if p and p.replace("\\", "/").rstrip("/").endswith("/" + spec.path)
        ]
        located[split] = (
            match[0] if match else (config_paths.get(split) or os.path.join(data_root, spec.path))
        )
    return split_set, located


def verify(split_set: registry.SplitSet, located: dict[str, str], use_cache: bool = True) -> list[FileCheck]:
    """Check the files of ``split_set`` at ``located`` (split -> path)."""
    return [
        check_file(split_set.file(split), path, split_set, use_cache)
        for split, path in located.items()
        if split_set.file(split) is not None
    ]


def status_from_cache(split_set: registry.SplitSet, located: dict[str, str]) -> tuple[str, str]:
    """(presence, verification) for ``data list``, from the files' existence and the verify cache."""
    states = []
    for split, path in located.items():
        spec = split_set.file(split)
        if not path or not os.path.exists(path):
            states.append(("missing", None))
        elif spec.md5 is None or os.path.isdir(path):
            states.append(("present", None))
        else:
            hit = cached_digest(path)
            states.append(("present", None if hit is None else hit[0] == spec.md5))
    present = [v for s, v in states if s == "present"]
    presence = "yes" if states and len(present) == len(states) else ("partial" if present else "no")
    if not present:
        verified = "-"
    elif any(v is False for v in present):
        verified = "MISMATCH"
    elif all(v is True for v in present):
        verified = "yes" if presence == "yes" else "yes (present files)"
    elif all(split_set.file(s).md5 is None for s in located):
        verified = "no checksum"
    else:
        verified = "not yet"
    return presence, verified


def describe_rows(split_set: registry.SplitSet, splits=registry.SPLITS_ORDER) -> str:
    rows = [split_set.file(s).rows for s in splits if split_set.file(s)]
    if all(r is None for r in rows):
        return "-"
    return " / ".join(f"{r:,}" if r is not None else "?" for r in rows)


def describe_files(paths: list[str], root: str) -> str:
    """``Criteo_x4/{train,valid,test}.csv``-style summary of paths (relative to root when under it)."""
    rel = [
        os.path.relpath(p, root) if root and p.startswith(root.rstrip(os.sep) + os.sep) else p
        for p in paths
        if p
    ]
    folders = {os.path.dirname(p) for p in rel}
    exts = {os.path.splitext(p)[1] for p in rel}
    if len(rel) > 1 and len(folders) == 1 and len(exts) == 1 and all(os.path.splitext(p)[1] for p in rel):
        names = ",".join(os.path.splitext(os.path.basename(p))[0] for p in rel)
        return os.path.join(folders.pop(), "{" + names + "}" + exts.pop())
    return "  ".join(rel)


__all__ = [
    "FileCheck",
    "cached_digest",
    "check_file",
    "describe_files",
    "describe_rows",
    "digest",
    "locate",
    "read_header",
    "status_from_cache",
    "verify",
]
