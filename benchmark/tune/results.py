"""What a study leaves: the tuned expid, the top trials, Optuna's plots, the summary and seed runs."""

from __future__ import annotations

import json
import logging
import os
import warnings

import yaml
from rich.console import Console
from rich.table import Table

from .. import config as config_mod
from .. import sweep as sweep_mod
from ..errors import CTRBenchError
from ..records import find_recorded, read_records
from ..tracking import require
from .space import Space
from .study import TuneConfig, counts

log = logging.getLogger("ctrbench")


def tuned_expid(expid: str) -> str:
    return f"{expid}_tuned"


def write_tuned_config(space: Space, best, out_dir: str, study_name: str = "") -> tuple[str, str]:
    """The best trial's resolved config as ``<expid>_tuned`` in a self-contained config directory."""
    spec = space.spec_for(best.params)
    params = spec.load()
    dataset = config_mod.load_dataset_config(spec.config_dir, str(params["dataset_id"]), spec.data_root)
    internal = {"expid", "model_id", "config_dir"}
    model = {
        k: v for k, v in params.items() if k not in dataset and k not in internal and not k.startswith("_")
    }
    model["dataset_id"] = params["dataset_id"]
    data = {k: params[k] for k in dataset if not k.startswith("_") and k != "dataset_id"}
    config_dir = os.path.join(out_dir, "config")
    os.makedirs(config_dir, exist_ok=True)
    name = tuned_expid(space.expid)
    value = f"{best.value:.6f}" if best.value is not None else "?"
    header = (
        f"# {name}: trial {best.number} of study '{study_name}' "
        f"(validation monitor {value}; run {best.user_attrs.get('run_id')}),\n"
        f"# the resolved config of {space.expid} with the tuned values\n"
        f"# {json.dumps(space.decode(best.params))}.\n"
        f"# Written by 'ctrbench tune'; rerun it with: ctrbench run --config {config_dir} --expid {name}\n"
    )
    for fname, content in (
        ("model_config.yaml", {name: model}),
        ("dataset_config.yaml", {str(params["dataset_id"]): data}),
    ):
        with open(os.path.join(config_dir, fname), "w") as fd:
            fd.write(header)
            yaml.safe_dump(content, fd, sort_keys=False, default_flow_style=None, width=120)
    return config_dir, name


def top_trials_table(study, space: Space, n: int = 10) -> tuple[Table, str]:
    optuna = require("optuna", "ctrbench tune")
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    done.sort(key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    c = counts(study)
    title = (
        f"study {study.study_name}: {c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed; "
        f"top {min(n, len(done))} by the validation monitor"
    )
    names = [p.name for p in space.params]
    cols = ["trial", "monitor", "test AUC", "best epoch", "seconds", *names]
    table = Table(title=title, title_justify="left")
    for col in cols:
        table.add_column(col, justify="left" if col in names else "right")
    rows = []
    for t in done[:n]:
        test = (t.user_attrs.get("test") or {}).get("AUC")
        decoded = space.decode(t.params)
        row = [
            str(t.number),
            f"{t.value:.6f}",
            f"{test:.6f}" if isinstance(test, (int, float)) else "",
            str(t.user_attrs.get("best_epoch", "")),
            f"{t.user_attrs.get('seconds', 0):.1f}",
            *[_short(decoded[k]) for k in names],
        ]
        rows.append(row)
        table.add_row(*row)
    md = (
        "\n".join(
            [
                f"{title}\n",
                "| " + " | ".join(cols) + " |",
                "|" + "---|" * len(cols),
                *["| " + " | ".join(r) + " |" for r in rows],
            ]
        )
        + "\n"
    )
    return table, md


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def write_plots(study, out_dir: str) -> list[str]:
    """Optuna's optimisation history, parameter importances and intermediate values as PNG."""
    optuna = require("optuna", "ctrbench tune")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = {
        k for t in complete for k in t.params if len({json.dumps(u.params.get(k)) for u in complete}) > 1
    }
    plots = [("history.png", ovm.plot_optimization_history, bool(complete))]
    plots.append(("importances.png", ovm.plot_param_importances, len(complete) >= 2 and bool(varying)))
    plots.append(
        (
            "intermediate.png",
            ovm.plot_intermediate_values,
            any(t.intermediate_values for t in study.get_trials(deepcopy=False)),
        )
    )
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, plot, possible in plots:
            if not possible:
                log.info("no %s: not enough finished trials with varying values", name)
                continue
            ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = os.path.join(out_dir, name)
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def finish(study, space: Space, cfg: TuneConfig, out_dir: str, console: Console, out: Console) -> dict:
    """Best config, top-trials table, trials.csv, plots and summary.json of a study."""
    optuna = require("optuna", "ctrbench tune")
    os.makedirs(out_dir, exist_ok=True)
    c = counts(study)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise CTRBenchError(
            f"study '{cfg.study}' has no complete trial ({c['PRUNED']} pruned, {c['FAIL']} failed); "
            f"widen the space, use --pruner none, or look at the failed trials' tracebacks"
        )
    best = study.best_trial
    config_dir, name = write_tuned_config(space, best, out_dir, cfg.study)
    table, md = top_trials_table(study, space)
    out.print(table)
    with open(os.path.join(out_dir, "top_trials.md"), "w") as fd:
        fd.write(md)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = study.trials_dataframe()
    frame.to_csv(os.path.join(out_dir, "trials.csv"), index=False)
    plots = write_plots(study, out_dir)
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    summary = {
        "study": cfg.study,
        "storage": cfg.storage,
        "expid": space.expid,
        "space": os.path.abspath(space.source),
        "sampler": cfg.sampler,
        "pruner": cfg.pruner,
        "trials": cfg.trials,
        "states": c,
        "best": {
            "number": best.number,
            "value": best.value,
            "params": space.decode(best.params),
            "run_id": best.user_attrs.get("run_id"),
            "valid": best.user_attrs.get("valid"),
            "test": best.user_attrs.get("test"),
        },
        "trial_seconds": round(
            sum(
                (t.datetime_complete - t.datetime_start).total_seconds()
                for t in trials
                if t.datetime_start and t.datetime_complete
            ),
            3,
        ),
        "span_seconds": round((max(ends) - min(starts)).total_seconds(), 3) if starts and ends else None,
        "tuned": {"expid": name, "config_dir": config_dir},
        "plots": plots,
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as fd:
        json.dump(summary, fd, indent=2, default=str)
    out.print(
        f"best trial {best.number}: monitor {best.value:.6f} {json.dumps(space.decode(best.params))}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"tuned expid {name}: ctrbench run --config {config_dir} --expid {name} --seed N",
        highlight=False,
        soft_wrap=True,
    )
    for p in plots:
        out.print(p, highlight=False)
    return summary


def run_seeds(
    config_dir: str,
    expid: str,
    seeds,
    results: str,
    jobs: int | None,
    gpus: list[int] | None,
    console: Console,
    ray_address: str | None = None,
    ray_gpus: float = 1.0,
    data_root: str | None = None,
) -> dict:
    """The tuned expid over seeds through the sweep machinery (finished seeds are skipped); test mean/std."""
    import numpy as np

    specs = sweep_mod.resolve(sweep_mod.expand_expids(config_dir, expid, seeds, ["verbose=0"], data_root))
    recorded = read_records(results)
    pending = [s for s in specs if find_recorded(recorded, s.config_hash) is None]
    sweep_mod.prebuild(pending)
    executor = sweep_mod.make_executor(results, jobs, gpus, ray_address, ray_gpus)
    result = sweep_mod.Sweep(specs, results, executor, 1, console, live=False).run()
    if result.failed:
        raise CTRBenchError(f"seed run {result.failed[0][0]} of {expid} failed: {result.failed[0][1]}")
    recorded = read_records(results)
    found = [find_recorded(recorded, s.config_hash) for s in specs]
    records = {s.config_hash: rec for s, rec in zip(specs, found) if rec is not None}
    per_metric: dict = {}
    for rec in records.values():
        for k, v in (rec.get("test") or {}).items():
            per_metric.setdefault(k, []).append(float(v))
    return {
        "expid": expid,
        "seeds": sorted(r["seed"] for r in records.values()),
        "test": {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
            for k, v in per_metric.items()
        },
    }
