"""Run records: one JSON line per finished run in ``results/runs.jsonl`` (or ``--results``).

Appends take an exclusive ``flock`` on the file and write the whole line in one ``write`` call, so
two runs finishing at once never interleave. Readers skip lines that are not valid JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import time


def environment() -> dict:
    import fuxictr
    import polars
    import torch

    from . import __version__

    return {"ctrbench": __version__, "fuxictr": fuxictr.__version__, "torch": torch.__version__,
            "polars": polars.__version__, "python": platform.python_version(), "host": platform.node(),
            "git_commit": git_commit()}


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def append_record(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = json.dumps(record, default=_jsonable, sort_keys=False) + "\n"
    with open(path, "a", encoding="utf-8") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            fd.write(line)
            fd.flush()
            os.fsync(fd.fileno())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def read_records(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as fd:
        for line in fd:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


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
