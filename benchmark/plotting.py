"""Plots of run records: PNG learning curves (the validation metric at each evaluation of every run) and
per-model metric bars with error bars across seeds (``ctrbench plot``)."""

from __future__ import annotations

import os
import re
from collections import OrderedDict

import numpy as np

from .errors import CTRBenchError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "plot"


def _filter(records, datasets=None, models=None):
    out = []
    for rec in records:
        name = rec.get("report_name") or rec.get("model")
        if datasets and rec.get("dataset_id") not in datasets:
            continue
        if models and name not in models:
            continue
        out.append(rec)
    return out


def _colors(names):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def plot_learning_curves(
    records: list[dict], out_dir: str, metric: str = "AUC", datasets=None, models=None
) -> list[str]:
    """One PNG per dataset: the validation ``metric`` at each evaluation of every run (one line per
    run, one colour per model). x is the epoch, or the training step when runs evaluate mid-epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = [
        r for r in _filter(records, datasets, models) if any(metric in h for h in r.get("history") or [])
    ]
    if not records:
        raise CTRBenchError(
            f"no run records with a validation '{metric}' history match; run experiments first "
            f"or check --results/--datasets/--models/--metric"
        )
    os.makedirs(out_dir, exist_ok=True)
    by_ds: "OrderedDict" = OrderedDict()
    for rec in records:
        by_ds.setdefault(rec["dataset_id"], []).append(rec)
    paths = []
    for ds, recs in by_ds.items():
        names = list(OrderedDict.fromkeys(r.get("report_name") or r["model"] for r in recs))
        colors = _colors(names)
        per_epoch = all(len({h["epoch"] for h in r["history"]}) == len(r["history"]) for r in recs)
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        labelled = set()
        for rec in recs:
            name = rec.get("report_name") or rec["model"]
            hist = [h for h in rec["history"] if metric in h]
            xs = [h["epoch"] if per_epoch else h["step"] for h in hist]
            ys = [h[metric] for h in hist]
            ax.plot(
                xs,
                ys,
                marker="o",
                markersize=3,
                linewidth=1.2,
                color=colors[name],
                alpha=0.85,
                label=name if name not in labelled else None,
            )
            labelled.add(name)
            if rec.get("best_epoch") and per_epoch:
                best = [h for h in hist if h["epoch"] == rec["best_epoch"]]
                if best:
                    ax.plot(
                        [best[0]["epoch"]], [best[0][metric]], marker="*", markersize=10, color=colors[name]
                    )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch" if per_epoch else "training step")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title(f"{ds}: validation {metric} per evaluation ({len(recs)} runs; * = best epoch)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"curves_{_slug(ds)}_{_slug(metric)}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_metric_bars(
    records: list[dict], out_dir: str, metric: str = "AUC", split: str = "test", datasets=None, models=None
) -> str:
    """One PNG: per dataset (a panel each), mean ``metric`` per config (labelled as report labels its
    rows) with ±1 std error bars across seeds and each seed's value as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import aggregate

    cells: "OrderedDict" = OrderedDict()
    # one bar per config, one value per distinct seed of it (records.group_records, as report does)
    for (label, ds), cell in aggregate(records, split, datasets, models).items():
        if cell.get(metric):
            cells.setdefault(ds, OrderedDict())[label] = list(cell[metric])
    if not cells:
        raise CTRBenchError(
            f"no run records with a {split} '{metric}' match; run experiments first or check "
            f"--results/--datasets/--models/--metric"
        )
    os.makedirs(out_dir, exist_ok=True)
    names = list(OrderedDict.fromkeys(m for per in cells.values() for m in per))
    colors = _colors(names)
    fig, axes = plt.subplots(
        1, len(cells), figsize=(max(4.5, 1.1 * len(names) + 2) * len(cells), 4.5), squeeze=False
    )
    for ax, (ds, per_model) in zip(axes[0], cells.items()):
        models_here = list(per_model)
        means = [float(np.mean(per_model[m])) for m in models_here]
        stds = [float(np.std(per_model[m], ddof=1)) if len(per_model[m]) > 1 else 0.0 for m in models_here]
        x = np.arange(len(models_here))
        ax.bar(x, means, yerr=stds, capsize=5, color=[colors[m] for m in models_here], alpha=0.75)
        for i, m in enumerate(models_here):
            ax.scatter(np.full(len(per_model[m]), i), per_model[m], color="black", s=10, zorder=3)
        lo = min(min(v) for v in per_model.values()) - max(stds + [0.0])
        hi = max(max(v) for v in per_model.values()) + max(stds + [0.0])
        pad = max((hi - lo) * 0.15, 1e-4)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(x, [f"{m}\n(n={len(per_model[m])})" for m in models_here], fontsize=8)
        ax.set_ylabel(f"{split} {metric}")
        ax.set_title(ds)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{split} {metric}: mean ± std over seeds (dots: single seeds)")
    fig.tight_layout()
    path = os.path.join(out_dir, f"{_slug(split)}_{_slug(metric)}_by_model.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
