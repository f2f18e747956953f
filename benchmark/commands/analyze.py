"""``ctrbench analyze``: embedding spectrum / information abundance and operand redundancy (SFG Sec. 4.3.1 and 4.3.2)."""

from __future__ import annotations

from typing import List, Optional

import typer


def analyze(
    expid: str = typer.Option(..., "--expid", "-e", help="Expid to train and analyse."),
    compare_expid: Optional[str] = typer.Option(
        None, "--compare-expid", help="A second expid (e.g. the GEN of a DIS run)."
    ),
    samples: int = typer.Option(5000, "--samples", help="Validation rows in the fixed sample."),
    config: Optional[str] = typer.Option(None, "--config", "-c"),
    data_root: Optional[str] = typer.Option(None, "--data-root"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Overrides for both runs."),
    out_dir: str = typer.Option("results/analysis", "--out-dir"),
):
    """Train EXPID (and COMPARE_EXPID), then write the spectrum, information abundance and redundancy
    of their embeddings on a fixed validation sample to JSON and a PNG (both runs on one plot)."""
    from ..analysis import train_and_analyse, write
    from ..config import load_config
    from .common import console, default_config_dir, out, setup_logging

    setup_logging(verbose=False)
    results = []
    for name in [expid] + ([compare_expid] if compare_expid else []):
        params = load_config(config or default_config_dir(), name, list(set_ or []), data_root)
        params["verbose"] = 0
        res = train_and_analyse(params, samples, console)
        results.append(res)
        out.print(
            f"{name}: {'GEN' if res['generative'] else 'DIS'} information abundance "
            f"{res['information_abundance']:.3f}, redundancy mean|rho| {res['redundancy']['mean_abs']:.4f}"
            f", test " + " ".join(f"{k}={v:.6f}" for k, v in res["test"].items()),
            highlight=False,
        )
    stem = expid + (f"_vs_{compare_expid}" if compare_expid else "")
    json_path, png_path = write(results, out_dir, stem)
    console.print(f"wrote {json_path} and {png_path}")
