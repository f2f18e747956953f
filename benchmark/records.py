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
from dataclasses import dataclass, field

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


# ---- what was run: grouping records by config ------------------------------------------------------

#: Record fields that say where or how a record is shown, not what was run (left out of labels).
_LABEL_NOISE = ("seed", "report_name", "table_column", "table_name", "verbose", "expid")


def config_key(record: dict) -> str:
    """The record's config hash with the seed left out: two records with the same key are seeds of one
    config. Computed from the record's resolved ``config`` by ``config.config_hash``; a record without a
    ``config`` (written by hand, or by a very old version) gets the key of its expid and model, so such
    records still group by what they name."""
    from .config import config_hash

    cfg = record.get("config")
    if isinstance(cfg, dict) and cfg:
        return config_hash({k: v for k, v in cfg.items() if k != "seed"})
    return config_hash({"expid": record.get("expid"), "model": record.get("model"), "_noconfig": True})


def record_hash(record: dict) -> str | None:
    """The record's config hash (seed included): the one it carries, else computed from its config."""
    if record.get("config_hash"):
        return record["config_hash"]
    cfg = record.get("config")
    if isinstance(cfg, dict) and cfg:
        from .config import config_hash

        return config_hash(cfg)
    return None


def find_recorded(records: list[dict], params: dict | str) -> dict | None:
    """The newest record of the run ``params`` (a resolved config, or its config hash) describes, or
    None: "is this config already recorded?" for sweep, tune and reproduce alike."""
    if isinstance(params, str):
        wanted = params
    else:
        from .config import config_hash

        wanted = config_hash(params)
    for rec in reversed(records):
        if record_hash(rec) == wanted:
            return rec
    return None


@dataclass
class RecordGroup:
    """The records of one config (one dataset, one expid, one seedless config hash), one per seed."""

    dataset_id: str
    expid: str
    model: str
    config_key: str
    label: str = ""
    records: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    differing: dict = field(default_factory=dict)
    dropped: list = field(default_factory=list)  # why records of this config are not seeds of it
    order: int = 0  # position of the group's newest record in the records list

    @property
    def name(self) -> str:
        """The model's report name (a targets row, else the model class)."""
        first = self.records[0] if self.records else {}
        return first.get("report_name") or self.model


class GroupList(list):
    """The groups, plus what was left out: ``incomplete`` (records without the split's metrics) and
    ``left_out`` (older configs that ``latest=True`` did not keep)."""

    def __init__(self, groups=(), incomplete=(), left_out=()):
        super().__init__(groups)
        self.incomplete = list(incomplete)
        self.left_out = list(left_out)

    def notes(self, split: str = "test") -> list[str]:
        """One line per thing left out, for a table's footnotes."""
        shown = 10
        lines = [
            f"{rec.get('expid') or rec.get('model')} on {rec.get('dataset_id')} seed {rec.get('seed')} "
            f"({rec.get('run_id') or rec.get('time') or 'no run id'}): no {split} metrics, not a seed"
            for rec in self.incomplete[:shown]
        ]
        if len(self.incomplete) > shown:
            lines.append(f"{len(self.incomplete) - shown} more records without {split} metrics")
        lines += [
            f"{g.label} on {g.dataset_id} ({len(g.seeds)} seed(s)): an older config of {g.expid}, "
            f"left out by --latest"
            for g in self.left_out
        ]
        for g in self:
            lines += [f"{g.label} on {g.dataset_id}: {d}" for d in g.dropped]
        return lines


def _has_split(record: dict, split: str) -> bool:
    values = record.get(split)
    return isinstance(values, dict) and any(isinstance(v, (int, float)) for v in values.values())


def _short(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _differing(configs: list[dict]) -> list[dict]:
    """Per config, the keys whose values are not the same in all ``configs`` (``-`` where absent)."""
    import inspect

    from .config import config_hash

    unhashed = inspect.signature(config_hash).parameters["exclude"].default  # where it ran, not what
    keys = sorted({k for cfg in configs for k in cfg} - set(_LABEL_NOISE) - set(unhashed))
    varying = [
        k
        for k in keys
        if len({json.dumps(cfg.get(k, "-"), sort_keys=True, default=str) for cfg in configs}) > 1
    ]
    return [{k: cfg.get(k, "-") for k in varying} for cfg in configs]


def _label(base: str, differing: dict, limit: int = 3) -> str:
    if not differing:
        return base
    items = [f"{k}={_short(v)}" for k, v in differing.items()]
    more = f", +{len(items) - limit} more" if len(items) > limit else ""
    return f"{base} [{', '.join(items[:limit])}{more}]"


def group_records(records: list[dict], split: str = "test", latest: bool = False) -> GroupList:
    """Records grouped by what was run: (dataset_id, expid, seedless config hash) -> one group whose
    records are distinct seeds of that config (see :class:`RecordGroup`), in first-seen order.

    - A record without metrics of ``split`` is no seed of any group and never replaces another record;
      it is listed in the result's ``incomplete``.
    - The same seed recorded twice in one config: the newest (later in the file) is kept and the group's
      ``dropped`` says so.
    - Labels: the report name (a targets row, else the model) when that name stands for one config on
      every dataset; otherwise the expid, and where one expid has several configs on a dataset, the keys
      that differ between them, e.g. ``DCN_tiny [batch_size=256]``.
    - ``latest=True`` keeps only the newest config of each expid on each dataset; the others are listed in
      the result's ``left_out``.
    """
    groups: dict = {}
    incomplete = []
    for index, rec in enumerate(records):
        if not _has_split(rec, split):
            incomplete.append(rec)
            continue
        model = rec.get("model") or rec.get("report_name") or "?"
        expid = rec.get("expid") or rec.get("report_name") or model
        key = (rec.get("dataset_id"), expid, config_key(rec))
        group = groups.get(key)
        if group is None:
            group = groups[key] = RecordGroup(rec.get("dataset_id"), expid, model, key[2])
        seed = rec.get("seed")
        if seed in group.seeds:
            at = group.seeds.index(seed)
            old = group.records[at]
            group.dropped.append(
                f"seed {seed} recorded again; the newer record ({rec.get('time') or f'record {index + 1}'}) "
                f"replaces the one of {old.get('time') or 'an earlier line'}"
            )
            group.records[at] = rec
        else:
            group.seeds.append(seed)
            group.records.append(rec)
        group.order = index
    found = list(groups.values())
    left_out = []
    if latest:
        newest: dict = {}
        for g in found:
            key = (g.dataset_id, g.expid)
            if key not in newest or g.order > newest[key].order:
                newest[key] = g
        left_out = [g for g in found if newest[(g.dataset_id, g.expid)] is not g]
        found = [g for g in found if newest[(g.dataset_id, g.expid)] is g]
    _set_labels(found)
    _set_labels(left_out, found)
    return GroupList(found, incomplete, left_out)


def _set_labels(groups: list[RecordGroup], context: list[RecordGroup] = ()) -> None:
    """Fill ``differing`` and ``label`` (see :func:`group_records`), judged among ``groups`` and
    ``context`` together."""
    everyone = list(context) + [g for g in groups if g not in context]
    by_expid: dict = {}
    for g in everyone:
        by_expid.setdefault((g.dataset_id, g.expid), []).append(g)
    for siblings in by_expid.values():
        configs = [(g.records[0].get("config") or {}) for g in siblings]
        for g, diff in zip(siblings, _differing(configs) if len(siblings) > 1 else [{}] * len(siblings)):
            g.differing = diff
    per_name: dict = {}
    for g in everyone:
        per_name.setdefault((g.dataset_id, g.name), []).append(g)
    ambiguous = {name for (_, name), gs in per_name.items() if len(gs) > 1}
    for g in groups:
        if g.name in ambiguous:
            g.label = _label(g.expid, g.differing)
        else:
            g.label = g.name
