"""Render the board: Jinja2 templates (``templates/``) and Plotly figures into one static folder.

The folder opens from disk (``file://``) with no server and no network: Plotly's JavaScript
(``plotly.offline.get_plotlyjs``), the board's stylesheet and its sorting/filtering script are written
into ``assets/``; every page is plain HTML. ``index.html`` holds the tables (one per dataset, one per
paper table and column) and the tuning studies; ``configs/<id>.html`` one page per config group: the
learning curves of every seed, the seed spread, the resolved config and its difference from the model's
default expid, the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field

import yaml

from .. import config as config_mod
from ..errors import USER_ERRORS, CTRBenchError
from .data import EFFICIENCY, MetricCell, Row, Table, is_auc, lower_is_better

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = ".ctrbench-board"
# settings that say where or how a run was shown or run, not what was run (left out of the default diff)
NOT_SETTINGS = (
    "expid",
    "model_id",
    "seed",
    "config_dir",
    "model_root",
    "gpu",
    "verbose",
    "data_root",
    "build_root",
    "train_data",
    "valid_data",
    "test_data",
    "report_name",
    "table_name",
    "table_column",
)
HISTORY_KEYS = ("epoch", "step", "lr")  # history fields that are not validation metrics
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


# ---- formatting ------------------------------------------------------------------------------------


def scale(metric: str) -> float:
    return 100.0 if is_auc(metric) else 1.0


def digits(metric: str) -> int:
    return 4 if is_auc(metric) else (6 if lower_is_better(metric) else 4)


def metric_title(metric: str) -> str:
    return f"{metric} (%)" if is_auc(metric) else metric


def fmt_value(metric: str, value) -> str:
    if value is None:
        return "–"
    return f"{value * scale(metric):.{digits(metric)}f}"


def fmt_cell(cell: MetricCell) -> str:
    """Mean ± half-width of the interval (two significant digits: its own precision)."""
    text = fmt_value(cell.metric, cell.mean)
    if cell.lo is not None and cell.hi is not None:
        text += f" ± {fmt_half((cell.hi - cell.lo) / 2 * scale(cell.metric))}"
    return text


def fmt_half(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.2g}" if 1e-4 <= abs(value) < 1e4 else f"{value:.1e}"


def fmt_paper(metric: str, value, sign: bool = False) -> str:
    """A paper number or a difference, already in the units shown (AUC in %)."""
    if value is None:
        return "–"
    return f"{value:{'+' if sign else ''}.{digits(metric)}f}"


def fmt_p(p) -> str:
    if p is None:
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def fmt_number(value, key: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if key == "params":
        return f"{value:,}"
    if key == "setting" and isinstance(value, float):
        return f"{value:.4g}"
    if key == "seconds_per_epoch":
        return f"{value:.3g}" if value < 10 else f"{value:,.1f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def verdict_class(text: str | None) -> str:
    """The CSS class of a verdict text (reproduced, not-reproduced, underpowered)."""
    for kind in ("not reproduced", "reproduced", "underpowered"):
        if text and text.startswith(kind):
            return kind.replace(" ", "-")
    return ""


def cell_title(cell: MetricCell, baseline: str | None) -> str:
    """The hover text of a metric cell: interval, seeds, tests."""
    parts = [f"mean over {cell.n} seed(s)"]
    if cell.lo is not None:
        parts.append(f"95% CI [{fmt_value(cell.metric, cell.lo)}, {fmt_value(cell.metric, cell.hi)}]")
    if cell.mark == "best":
        parts.append("best mean of the table")
    elif cell.mark == "tied":
        parts.append(f"not significantly different from the best (Holm p = {fmt_p(cell.best_p_adj)})")
    if cell.p is not None:
        parts.append(
            f"vs {baseline}: {cell.test} t-test p = {fmt_p(cell.p)}, Holm-adjusted {fmt_p(cell.p_adj)}"
        )
    return "; ".join(parts)


# ---- per-config details ---------------------------------------------------------------------------


@dataclass
class ConfigPage:
    row: Row
    tables: list = field(default_factory=list)  # (table id, title) the config appears in
    curves: str = ""
    spread: str = ""
    seeds: list = field(default_factory=list)  # per-seed rows
    config_yaml: str = ""
    default_expid: str | None = None
    default_note: str = ""
    default_diff: list = field(default_factory=list)  # (key, ours, default)
    environments: list = field(default_factory=list)  # (seed, {key: value})
    env_keys: list = field(default_factory=list)


def _public(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in NOT_SETTINGS}


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


class Defaults:
    """The model's default expid (``<Model>_default``) resolved by ``config.load_config`` on the run's
    dataset, once per (config folder, model, dataset). Where the run's dataset is not in that folder,
    the expid resolves on its own dataset and the dataset section's settings are left out of the diff."""

    def __init__(self, config_dir: str):
        self.config_dir = config_dir
        self.cache: dict = {}

    def resolve(self, model: str, dataset_id: str, record_config_dir: str | None):
        """(expid, params or None, note, dataset keys to leave out)."""
        folders = [d for d in (record_config_dir, self.config_dir) if d and os.path.isdir(d)]
        folders = list(dict.fromkeys(os.path.abspath(d) for d in folders))
        expid = f"{model}_default"
        key = (tuple(folders), expid, dataset_id)
        if key in self.cache:
            return self.cache[key]
        found = (expid, None, f"no expid {expid} in {', '.join(folders) or 'any config folder'}", set())
        for folder in folders:
            try:
                if expid not in config_mod.list_expids(folder):
                    continue
            except USER_ERRORS:  # not a config folder
                continue
            for sets in ([f"dataset_id={dataset_id}"], None):
                try:
                    params = config_mod.load_config(folder, expid, sets)
                except USER_ERRORS as exc:
                    found = (expid, None, f"{expid} does not resolve: {exc}", set())
                    continue
                if sets:
                    found = (expid, params, f"{expid} from {folder}, resolved on this dataset", set())
                else:
                    dataset_keys = set(config_mod.load_dataset_config(folder, params["dataset_id"]))
                    note = (
                        f"{expid} from {folder}, resolved on its own dataset {params['dataset_id']} "
                        f"({dataset_id} is not in that folder); the dataset's settings are left out"
                    )
                    found = (expid, params, note, dataset_keys)
                break
            break
        self.cache[key] = found
        return found


def _default_diff(cfg: dict, params: dict, skip=()) -> list:
    ours, theirs = _public(cfg), _public(params)
    keys = sorted((set(ours) | set(theirs)) - set(skip))
    return [
        (k, _show(ours.get(k, "–")), _show(theirs.get(k, "–")))
        for k in keys
        if not _same(ours.get(k, "–"), theirs.get(k, "–"))
    ]


def _show(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _figure_html(fig, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOT_CONFIG, validate=False
    )


def _layout(fig, height: int = 320):
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": -0.25},
        font={"size": 13},
    )
    return fig


def learning_curves(row: Row) -> str:
    """Validation metrics per evaluation, one line per seed, one panel per metric."""
    from plotly.subplots import make_subplots

    metrics = []
    for rec in row.records:
        for point in rec.get("history") or []:
            metrics += [k for k, v in point.items() if k not in HISTORY_KEYS and isinstance(v, (int, float))]
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        return ""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"valid {m}" for m in metrics])
    for i, seed in enumerate(row.seeds):
        history = row.records[i].get("history") or []
        for col, metric in enumerate(metrics, 1):
            points = [p for p in history if isinstance(p.get(metric), (int, float))]
            x = [p.get("step", j) for j, p in enumerate(points, 1)]
            fig.add_scatter(
                x=x,
                y=[p[metric] for p in points],
                mode="lines+markers",
                name=f"seed {seed}",
                legendgroup=f"seed {seed}",
                showlegend=col == 1,
                line={"color": _color(i)},
                row=1,
                col=col,
            )
            fig.update_xaxes(title_text="training step", row=1, col=col)
    return _figure_html(_layout(fig), f"curves-{row.id}")


def seed_spread(row: Row) -> str:
    """Test metrics of every seed, and beside them the mean with its 95% interval; one panel per metric."""
    from plotly.subplots import make_subplots

    metrics = list(row.cells)
    if not metrics:
        return ""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[metric_title(m) for m in metrics])
    for col, metric in enumerate(metrics, 1):
        cell = row.cells[metric]
        k = scale(metric)
        fig.add_scatter(
            x=[f"seed {s}" for s in cell.values],
            y=[v * k for v in cell.values.values()],
            mode="markers",
            marker={"size": 11, "color": [_color(row.seeds.index(s)) for s in cell.values]},
            showlegend=False,
            hovertemplate="%{x}: %{y}<extra></extra>",
            row=1,
            col=col,
        )
        interval = cell.lo is not None and cell.hi is not None
        fig.add_scatter(
            x=["mean ± 95% CI" if interval else "mean"],
            y=[cell.mean * k],
            mode="markers",
            marker={"size": 12, "symbol": "diamond", "color": "#222"},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [(cell.hi - cell.mean) * k] if interval else [0],
                "arrayminus": [(cell.mean - cell.lo) * k] if interval else [0],
                "width": 8,
            },
            showlegend=False,
            hovertemplate="%{x}: %{y}<extra></extra>",
            row=1,
            col=col,
        )
        fig.update_xaxes(type="category", row=1, col=col)
    return _figure_html(_layout(fig, 300), f"spread-{row.id}")


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def config_page(row: Row, defaults: Defaults, split: str) -> ConfigPage:
    page = ConfigPage(row=row)
    page.curves = learning_curves(row)
    page.spread = seed_spread(row)
    for seed, rec in zip(row.seeds, row.records):
        page.seeds.append(
            {
                "seed": seed,
                "valid": {m: v for m, v in (rec.get("valid") or {}).items() if isinstance(v, (int, float))},
                split: {m: v for m, v in (rec.get(split) or {}).items() if isinstance(v, (int, float))},
                "best_epoch": rec.get("best_epoch"),
                "epochs_run": rec.get("epochs_run"),
                "train_seconds": rec.get("train_seconds"),
                "run_id": rec.get("run_id"),
                "time": rec.get("time"),
            }
        )
        env = dict(rec.get("env") or {})
        env["device"] = rec.get("device")
        page.environments.append((seed, env))
        page.env_keys += [k for k in env if k not in page.env_keys]
    cfg = dict(row.records[0].get("config") or {})
    page.config_yaml = yaml.safe_dump(
        {k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=True, default_flow_style=None
    )
    if cfg:
        page.default_expid, params, page.default_note, skip = defaults.resolve(
            row.model, row.dataset_id, cfg.get("config_dir")
        )
        if params is not None:
            page.default_diff = _default_diff(cfg, params, skip)
    else:
        page.default_note = "the records carry no resolved config"
    return page


# ---- tuning figures --------------------------------------------------------------------------------


def tuning_figure(studies: list, by: str) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, study in enumerate(studies):
        x, y = study.best_so_far(by)
        fig.add_scatter(
            x=x, y=y, mode="lines+markers", line={"shape": "hv", "color": _color(i)}, name=study.name
        )
    fig.update_xaxes(title_text="finished trials" if by == "number" else "wall time (s)")
    fig.update_yaxes(title_text="best validation value so far")
    return _figure_html(_layout(fig, 360), f"tuning-{by}")


# ---- the site --------------------------------------------------------------------------------------


def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(os.path.join(HERE, "templates")),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        value=lambda value, metric: fmt_value(metric, value),
        cell=fmt_cell,
        paper=lambda value, metric, sign=False: fmt_paper(metric, value, sign),
        pvalue=fmt_p,
        number=fmt_number,
        metric_title=metric_title,
        verdict_class=verdict_class,
    )
    env.globals.update(
        cell_title=cell_title,
        EFFICIENCY=EFFICIENCY,
        scale=scale,
        is_auc=is_auc,
        lower_is_better=lower_is_better,
    )
    return env


def _has_relaimp(metric: str) -> bool:
    return is_auc(metric) or lower_is_better(metric)


def render(
    out_dir: str,
    tables: list[Table],
    studies: list,
    sources: dict,
    config_dir: str,
    split: str = "test",
    alpha: float = 0.05,
) -> dict:
    """Write the site to ``out_dir`` (see the module doc); returns {index, pages}.

    Written into a sibling folder first and moved into place, so an interrupted build leaves the previous
    board whole. ``out_dir`` must be absent, empty or an earlier board (it holds the marker file)."""
    from plotly.offline import get_plotlyjs

    out_dir = os.path.abspath(out_dir)
    _check_out(out_dir)
    env = _env()
    defaults = Defaults(config_dir)
    pages: dict = {}
    for table in tables:
        for row in table.rows:
            if row.id not in pages:
                pages[row.id] = config_page(row, defaults, split)
            pages[row.id].tables.append((table.id, table.title))
    building = f"{out_dir}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(os.path.join(building, "assets"))
    os.makedirs(os.path.join(building, "configs"))
    try:
        with open(os.path.join(building, "assets", "plotly.min.js"), "w", encoding="utf-8") as fd:
            fd.write(get_plotlyjs())
        for name in ("board.js", "board.css"):
            shutil.copyfile(os.path.join(HERE, "static", name), os.path.join(building, "assets", name))
        context = {
            "tables": tables,
            "studies": studies,
            "sources": sources,
            "split": split,
            "alpha": alpha,
            "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "has_relaimp": _has_relaimp,
            "datasets": sorted({t.dataset_id for t in tables}),
            "papers": sorted({t.paper for t in tables if t.paper}),
            "tuning_trials": tuning_figure(studies, "number") if studies else "",
            "tuning_time": tuning_figure(studies, "seconds") if studies else "",
            "root": "",
        }
        with open(os.path.join(building, "index.html"), "w", encoding="utf-8") as fd:
            fd.write(env.get_template("index.html").render(**context))
        template = env.get_template("config.html")
        for page in pages.values():
            path = os.path.join(building, "configs", f"{page.row.id}.html")
            with open(path, "w", encoding="utf-8") as fd:
                fd.write(template.render(page=page, split=split, built=context["built"], root="../"))
        open(os.path.join(building, MARKER), "w").close()
        _swap(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {"index": os.path.join(out_dir, "index.html"), "pages": len(pages)}


def _check_out(out_dir: str) -> None:
    if os.path.isfile(out_dir):
        raise CTRBenchError(f"--out {out_dir} is a file; give a folder for the board, e.g. results/board")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, MARKER)):
        raise CTRBenchError(
            f"--out {out_dir} is a folder with other files (not a board written by 'ctrbench board'); "
            f"choose a new or empty folder, e.g. {os.path.join(out_dir, 'board')}"
        )


def _swap(building: str, out_dir: str) -> None:
    """Move the new board into place; the old one (if any) goes only once the new one is there."""
    old = None
    if os.path.isdir(out_dir):
        old = f"{out_dir}.old-{os.getpid()}"
        os.rename(out_dir, old)
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    os.rename(building, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)
