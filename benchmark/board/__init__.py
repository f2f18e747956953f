"""``ctrbench board``: a static results site built from run records, targets files and tuning studies.

- :mod:`.data`: the numbers (rows per config group, intervals, tests, marks, RelaImp, paper values);
- :mod:`.tuning`: best-so-far curves of ``ctrbench tune`` studies;
- :mod:`.site`: the pages (Jinja2 templates in ``templates/``, Plotly figures, ``static/`` script and
  stylesheet), written into one folder that opens from disk.
"""

from __future__ import annotations

import importlib
import json
import os

from ..errors import CTRBenchError
from ..records import read_records
from . import data, tuning


def verdicts_path(results: str) -> list[str]:
    """Where ``reproduce`` puts the verdicts of the table whose records are ``results``
    (``<out>/<table>_runs.jsonl`` -> ``<out>/<table>.verdicts.json``)."""
    stem = results[: -len("_runs.jsonl")] if results.endswith("_runs.jsonl") else os.path.splitext(results)[0]
    return [f"{stem}.verdicts.json"]


def read_verdicts(path: str) -> dict:
    """(table, row, column, metric) -> verdict text, from a ``<table>.verdicts.json`` of ``reproduce``
    (its ``cells``: per cell the per-metric ``stats.verdict`` results)."""
    from ..verdicts import verdict_text

    try:
        with open(path, encoding="utf-8") as fd:
            doc = json.load(fd)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CTRBenchError(f"--verdicts {path}: cannot be read as JSON ({exc})")
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list) or not doc.get("table"):
        raise CTRBenchError(
            f"--verdicts {path}: not a verdicts file of 'ctrbench reproduce' (a 'table' and a list of 'cells')"
        )
    out = {}
    for cell in doc["cells"]:
        for metric, result in ((cell or {}).get("metrics") or {}).items():
            if isinstance(result, dict) and result.get("verdict"):
                one = {"verdict": result["verdict"], "seeds_needed": result.get("seeds_needed")}
                text = verdict_text({**one, "metrics": {metric: result}})
                out[(doc["table"], cell.get("row"), cell.get("column"), metric)] = text
    return out


def build(
    results: list[str],
    out_dir: str,
    targets: list[str] = (),
    verdicts: list[str] = (),
    tune_storages: list[str] = (),
    baseline: str | None = None,
    config_dir: str = "config",
    split: str = "test",
    alpha: float = 0.05,
) -> dict:
    """Read everything, compute the tables and write the site; returns {index, pages, tables, studies}."""
    for module in ("jinja2", "plotly"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise CTRBenchError(
                f"ctrbench board needs the '{module}' package, which is not installed; "
                f"install it with: pip install 'ctrbench[board]'"
            )
    from ..reproduce import load_targets
    from . import site

    records, sources = [], {}
    for path in results:
        if not os.path.isfile(path):
            raise CTRBenchError(
                f"--results {path}: no such file; give a run records file (results/runs.jsonl)"
            )
        mine = read_records(path)
        records += mine
        sources[os.path.basename(path)] = os.path.abspath(path)
    if not records:
        raise CTRBenchError(
            f"no run records in {', '.join(results)}; run experiments first (ctrbench run / sweep / reproduce)"
        )
    tables = data.dataset_tables(records, baseline, split, alpha)
    found_verdicts: dict = {}
    for path in list(verdicts) + [v for r in results for v in verdicts_path(r) if os.path.isfile(v)]:
        found_verdicts.update(read_verdicts(path))
    for path in targets:
        spec = load_targets(path)
        paper = data.paper_tables(spec, records, found_verdicts, baseline, split, alpha)
        if not paper:
            raise CTRBenchError(
                f"--targets {path}: no records of table '{spec['name']}' in {', '.join(results)}; "
                f"give the records 'ctrbench reproduce {path}' wrote (<out>/{spec['name']}_runs.jsonl)"
            )
        tables += paper
    studies = []
    storages = [s if "://" in s else os.path.abspath(s) for s in tune_storages]
    for storage in list(dict.fromkeys(storages + tuning.find_storages(results))):
        studies += tuning.load_studies(storage)
    written = site.render(out_dir, tables, studies, sources, config_dir, split, alpha)
    return {**written, "tables": len(tables), "studies": len(studies)}
