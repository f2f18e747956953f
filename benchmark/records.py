"""Run records: one JSON line per finished run in ``results/runs.jsonl`` (or ``--results``).

Writing (``append_record``): the file is opened with ``O_APPEND`` under an exclusive ``flock`` and the
whole line goes out in one ``os.write``, so two runs finishing at once never interleave. A file whose
last line was torn (a full disk, a killed writer: no final newline) gets a newline first, with a
warning naming the file and line, so the next good record never glues onto the torn one. When the
append itself fails (``ENOSPC``, a short write), the bytes it wrote are cut off again, the record is
kept whole in a side file (``<results>.unsaved-<pid>-<time>.jsonl`` next to it, else in the home or
temp folder) and a ``CTRBenchError`` says where it is and how to add it back.

Reading (``read_records``): every line that is not a JSON object (a torn line, a stray table) is
skipped with a warning naming ``file:line``; nothing is skipped silently.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import platform
import subprocess
import tempfile
import time

from .errors import CTRBenchError

log = logging.getLogger("ctrbench.records")


def environment() -> dict:
    import fuxictr
    import polars
    import torch

    from . import __version__

    return {
        "ctrbench": __version__,
        "fuxictr": fuxictr.__version__,
        "torch": torch.__version__,
        "polars": polars.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def record_line(record: dict) -> bytes:
    """The record as one complete JSON line (json escapes newlines inside strings)."""
    return (json.dumps(record, default=_jsonable, sort_keys=False) + "\n").encode("utf-8")


def _line_count(fd: int, size: int) -> int:
    """Lines in the first ``size`` bytes of ``fd`` (the torn last line is line count + 1)."""
    count, offset = 0, 0
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def append_record(path: str, record: dict) -> None:
    """Append ``record`` as one line, in one write, under an exclusive lock (see the module doc)."""
    data = record_line(record)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        side = keep_aside(path, data)
        raise CTRBenchError(
            f"cannot open the run records file {path} ({exc.strerror}); the record is "
            f"kept in {side}: append it with 'cat {side} >> {path}' once {path} is writable"
        )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = _line_count(fd, size) + 1
            log.warning(
                "%s:%d: the last line is torn (no newline at its end, an interrupted write); it is "
                "left as is and skipped when reading, and the new record starts on the next line",
                path,
                line,
            )
            data = b"\n" + data
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError as exc:
            _cut_back(fd, size)
            side = keep_aside(path, data.lstrip(b"\n"))
            raise CTRBenchError(
                f"could not append the run record to {path} ({exc.strerror or exc}); the record "
                f"is kept in {side}: append it with 'cat {side} >> {path}' once there is room"
            )
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _cut_back(fd: int, size: int) -> None:
    """Remove what a failed append wrote past ``size`` (we hold the lock: nobody else wrote there)."""
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    except OSError as exc:
        log.warning("could not remove a partial record line after byte %d: %s", size, exc.strerror)


def keep_aside(path: str, data: bytes) -> str:
    """Write ``data`` (one record line) to a new side file; returns its path.

    Tried next to ``path`` first, then in the home and temp folders (a full disk may hold all of the
    results folder). Raises CTRBenchError, with the record in the message, when none can be written.
    """
    name = f"{os.path.basename(path)}.unsaved-{os.getpid()}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    folders = [os.path.dirname(os.path.abspath(path)), os.path.expanduser("~"), tempfile.gettempdir()]
    errors = []
    for folder in dict.fromkeys(folders):
        side = os.path.join(folder, name)
        try:
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            errors.append(f"{folder}: {exc.strerror}")
            continue
        try:
            if os.write(fd, data) == len(data):
                os.fsync(fd)
                return side
            errors.append(f"{folder}: short write")
        except OSError as exc:
            errors.append(f"{folder}: {exc.strerror}")
        finally:
            os.close(fd)
        try:
            os.unlink(side)
        except OSError:
            pass
    raise CTRBenchError(
        f"could not write the run record to {path} nor to a side file ({'; '.join(errors)}); "
        f"the record: {data.decode('utf-8', 'replace').strip()}"
    )


def read_records(path: str) -> list[dict]:
    """The records of ``path`` in file order; each line that is not a JSON object is skipped with a
    warning naming ``path:line``."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, "rb") as fd:
        for number, raw in enumerate(fd, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                torn = not raw.endswith(b"\n")
                why = "a torn last line (no newline at its end)" if torn else f"not JSON ({_reason(exc)})"
                log.warning("%s:%d: skipped, %s", path, number, why)
                continue
            if not isinstance(record, dict):
                log.warning(
                    "%s:%d: skipped, a JSON %s, not a run record", path, number, type(record).__name__
                )
                continue
            records.append(record)
    return records


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return "not UTF-8"


def looks_like_records(path: str) -> bool:
    """Whether ``path`` is an existing file whose first non-empty line is a JSON object (a run-record
    file, a sweep ledger): files that a table must never overwrite."""
    try:
        with open(path, "rb") as fd:
            for raw in fd:
                if raw.strip():
                    try:
                        return isinstance(json.loads(raw.decode("utf-8")), dict)
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        return False
    except OSError:
        return False
    return False


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    return str(value)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
