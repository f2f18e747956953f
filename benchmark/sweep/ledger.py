"""The sweep loop: a queue of runs over an executor's slots, the ledger of state changes, the records check
(finished runs are skipped) and the live table (see ``benchmark/sweep/__init__.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..records import append_record, find_recorded, now, read_records
from .expand import RunSpec

if TYPE_CHECKING:
    from .executors import Outcome


# ---- ledger -------------------------------------------------------------------------------------


class Ledger:
    """Append-only JSON lines: one event per run state change."""

    def __init__(self, path: str):
        self.path = path

    def event(self, spec: RunSpec, status: str, **extra) -> None:
        append_record(
            self.path,
            {
                "time": now(),
                "status": status,
                "run_id": spec.run_id,
                "expid": spec.expid,
                "seed": spec.seed,
                "config_hash": spec.config_hash,
                **extra,
            },
        )

    def events(self) -> list[dict]:
        return read_records(self.path)


# ---- the sweep loop -----------------------------------------------------------------------------


@dataclass
class Entry:
    spec: RunSpec
    status: str = "queued"  # queued | running | done | failed | skipped
    slot: int | None = None
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    error: str | None = None
    metrics: dict | None = None


@dataclass
class SweepResult:
    ran: list = field(default_factory=list)  # run labels completed in this invocation
    skipped: list = field(default_factory=list)  # already in the records
    failed: list = field(default_factory=list)  # (label, error)

    @property
    def ok(self) -> bool:
        return not self.failed


class Sweep:
    """Queue of runs over an executor's slots, with the ledger, the records check and the live view."""

    def __init__(
        self,
        specs: list[RunSpec],
        results: str,
        executor,
        retries: int = 1,
        console: Console | None = None,
        state_dir: str | None = None,
        live: bool | None = None,
        poll_seconds: float = 0.5,
    ):
        self.specs = specs
        self.results = results
        self.executor = executor
        self.retries = max(0, int(retries))
        self.console = console or Console(stderr=True)
        self.state_dir = state_dir or sweep_dir(results)
        self.ledger = Ledger(os.path.join(self.state_dir, "ledger.jsonl"))
        self.progress_dir = os.path.join(self.state_dir, "progress")
        self.live = self.console.is_terminal if live is None else live
        self.poll_seconds = poll_seconds
        self.entries = [Entry(s) for s in specs]
        self.started_at = time.time()

    # -- view --
    def _progress(self, entry: Entry) -> dict:
        try:
            with open(os.path.join(self.progress_dir, f"{entry.spec.run_id}.json")) as fd:
                return json.load(fd)
        except (OSError, ValueError):
            return {}

    def table(self) -> Table:
        counts = {
            s: sum(e.status == s for e in self.entries)
            for s in ("queued", "running", "done", "failed", "skipped")
        }
        durations = [
            e.finished - e.started for e in self.entries if e.status == "done" and e.started and e.finished
        ]
        remaining = counts["queued"] + counts["running"]
        eta = (
            (sum(durations) / len(durations)) * remaining / max(self.executor.slots, 1) if durations else None
        )
        title = (
            f"sweep: {counts['done']} done, {counts['running']} running, {counts['queued']} queued, "
            f"{counts['failed']} failed, {counts['skipped']} already done"
            + (f"  ETA {_duration(eta)}" if eta is not None and remaining else "")
        )
        table = Table(title=title, title_justify="left", expand=False)
        for col, justify in (
            ("run", "left"),
            ("slot", "right"),
            ("status", "left"),
            ("epoch", "right"),
            ("progress", "right"),
            ("val AUC", "right"),
            ("best", "right"),
            ("test AUC", "right"),
            ("samples/s", "right"),
            ("elapsed", "right"),
            ("ETA", "right"),
        ):
            table.add_column(col, justify=justify)
        shown = [e for e in self.entries if e.status == "running"]
        shown += [e for e in self.entries if e.status in ("done", "failed")][-5:]
        shown += [e for e in self.entries if e.status == "queued"][:3]
        for e in shown:
            p = self._progress(e) if e.status in ("running", "done") else {}
            auc = (p.get("valid") or {}).get("AUC")
            best = p.get("best")
            test_auc = (e.metrics or {}).get("AUC") if e.status == "done" else None
            elapsed = (e.finished or time.time()) - e.started if e.started else None
            style = {"done": "green", "failed": "red", "running": "bold"}.get(e.status, "dim")
            table.add_row(
                e.spec.label,
                "" if e.slot is None else str(e.slot),
                Text(e.status, style=style),
                f"{p['epoch']}/{p['epochs']}" if p.get("epochs") else "",
                f"{100 * p.get('fraction', 0):.0f}%" if p else "",
                f"{auc:.4f}" if isinstance(auc, (int, float)) else "",
                f"{best:.4f}" if isinstance(best, (int, float)) else "",
                f"{test_auc:.4f}" if isinstance(test_auc, (int, float)) else "",
                f"{p['samples_per_second']:,.0f}" if p.get("samples_per_second") else "",
                _duration(elapsed),
                _duration(p.get("eta")) if p.get("eta") and e.status == "running" else "",
            )
        return table

    def __rich__(self):
        failed = [e for e in self.entries if e.status == "failed" and e.error]
        if not failed:
            return self.table()
        return Group(self.table(), *[Text(f"{e.spec.label}: {e.error}", style="red") for e in failed[-3:]])

    def _say(self, text: str) -> None:
        if not self.live:
            self.console.print(text, highlight=False, soft_wrap=True)

    # -- loop --
    def run(self) -> SweepResult:
        os.makedirs(self.progress_dir, exist_ok=True)
        result = SweepResult()
        recorded = read_records(self.results)
        for e in self.entries:
            if find_recorded(recorded, e.spec.config_hash) is not None:
                e.status = "skipped"
                result.skipped.append(e.spec.label)
        pending = [e for e in self.entries if e.status == "queued"]
        for e in pending:
            self.ledger.event(e.spec, "queued")
        self._say(
            f"sweep: {len(self.entries)} runs, {len(result.skipped)} already done, {len(pending)} to run "
            f"on {self.executor.slots} slot(s)"
        )
        free = list(range(self.executor.slots))
        ctx = (
            Live(self, console=self.console, refresh_per_second=2, transient=False)
            if self.live
            else contextlib.nullcontext()
        )
        try:
            with ctx:
                while pending or self.executor.running():
                    while pending and free:
                        e = pending.pop(0)
                        e.slot, e.status, e.started, e.attempts = (
                            free.pop(0),
                            "running",
                            time.time(),
                            e.attempts + 1,
                        )
                        self.ledger.event(e.spec, "started", slot=e.slot, attempt=e.attempts)
                        self._say(f"start  {e.spec.label} (slot {e.slot})")
                        self.executor.start(e.spec, e.slot)
                    for outcome in self.executor.poll():
                        self._finish(outcome, pending, free, result)
                    if self.executor.running():
                        time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            self.executor.cancel()
            for e in self.entries:
                if e.status == "running":
                    e.status = "queued"
                    self.ledger.event(e.spec, "interrupted")
            raise
        return result

    def _finish(self, outcome: Outcome, pending: list, free: list, result: SweepResult) -> None:
        entry = next(e for e in self.entries if e.spec is outcome.spec)
        entry.finished = time.time()
        free.append(entry.slot)
        free.sort()
        ok, error = outcome.ok, outcome.error
        if ok and outcome.record is not None and not self.executor.appends_records:
            append_record(self.results, outcome.record)
        if ok and find_recorded(read_records(self.results), outcome.spec.config_hash) is None:
            ok, error = False, "the run ended without a record in " + self.results
        if ok:
            entry.status = "done"
            entry.metrics = (outcome.record or {}).get("test") or self._record_metrics(entry.spec)
            self.ledger.event(entry.spec, "done", seconds=round(entry.finished - entry.started, 3))
            result.ran.append(entry.spec.label)
            auc = (entry.metrics or {}).get("AUC")
            self._say(f"done   {entry.spec.label}" + (f" test AUC {auc:.6f}" if auc is not None else ""))
            return
        entry.error = error
        self.ledger.event(entry.spec, "failed", error=error, attempt=entry.attempts)
        if entry.attempts <= self.retries:
            entry.status = "queued"
            pending.append(entry)
            self._say(f"failed {entry.spec.label} (retrying): {error}")
        else:
            entry.status = "failed"
            result.failed.append((entry.spec.label, error))
            self._say(f"failed {entry.spec.label}: {error}")

    def _record_metrics(self, spec: RunSpec) -> dict | None:
        rec = find_recorded(read_records(self.results), spec.config_hash)
        return None if rec is None else rec.get("test")


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def sweep_dir(results: str) -> str:
    """``results/runs.jsonl`` -> ``results/runs.sweep/`` (ledger, logs, progress)."""
    stem, _ = os.path.splitext(os.path.abspath(results))
    return stem + ".sweep"
