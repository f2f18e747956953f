"""Embedding diagnostics of SFG (paper §4.3.1 and §4.3.2; the authors' plot_paper_collapse.py and
plot_paper_cov_matrix.py in USTC-StarTeam/GE4Rec): dimensional collapse and operand redundancy.

- Spectrum: the covariance C of the evaluated embedding over a fixed validation sample (DIS: the raw
  concatenated embeddings; GEN: the generated ones; DCNv2/CrossNet: every cross layer's left operand
  stacked along the samples), its eigenvalues sigma_1 >= ... normalised by the largest, and the information
  abundance IA = sum(sigma) / max(sigma) (of the covariance spectrum).
- Redundancy: the Pearson correlation matrix between the two interacted operands (DIS: E with E; GEN: E with
  Z; DCNv2: the first cross layer's left operand with x_0 W_0), summarised as mean |rho| and the mean
  squared off-diagonal correlation.

The sample is the first ``samples`` rows of the validation split (in file order, so every run sees the same
rows), evaluated with the model in eval mode (the authors' script used train mode; eval mode makes the
numbers deterministic).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from .errors import CTRBenchError


def spectrum(emb: np.ndarray) -> np.ndarray:
    """Normalised eigenvalues of the covariance of ``emb`` (S x D), largest first."""
    centred = emb - emb.mean(axis=0, keepdims=True)
    cov = centred.T @ centred / max(len(emb), 1)
    values = np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
    top = values[0] if len(values) and values[0] > 0 else 1.0
    return values / top


def information_abundance(normalised: np.ndarray) -> float:
    return float(normalised.sum() / normalised.max()) if normalised.max() > 0 else 0.0


def pearson(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Column-wise Pearson correlations (D_left x D_right); constant columns give 0."""

    def standardise(x):
        std = x.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (x - x.mean(axis=0)) / std
        return np.nan_to_num(z)

    return standardise(left).T @ standardise(right) / max(len(left) - 1, 1)


def redundancy(left: np.ndarray, right: np.ndarray) -> dict:
    corr = pearson(left, right)
    off = ~np.eye(*corr.shape, dtype=bool) if corr.shape[0] == corr.shape[1] else np.ones_like(corr, bool)
    return {"mean_abs": float(np.abs(corr[off]).mean()), "offdiag_sq": float((corr[off] ** 2).mean())}


def analysis_params(params: dict) -> dict:
    """Run a DIS model through its GEN class with the encoders off (same parameters and outputs)."""
    from model_zoo import get_model_class
    from model_zoo.sfg import GEN_OF, Generative

    cls = get_model_class(str(params["model"]))
    if issubclass(cls, Generative):
        return params
    if params["model"] not in GEN_OF:
        raise CTRBenchError(
            f"analyze supports {', '.join(GEN_OF)} and their _GEN versions; "
            f"expid '{params['expid']}' uses {params['model']}"
        )
    return dict(params, model=GEN_OF[params["model"]], generative=False)


def train_and_analyse(params: dict, samples: int, console=None) -> dict:
    """Train the run (the ordinary run path: its own files, lock and best weights; no record) and
    analyse the embeddings of its best weights."""
    from .runner import RunOptions, run

    params = analysis_params(params)
    trained = run(params, RunOptions(resume=True, quiet=True, console=console))
    model, loaders, feature_map = trained.setup.model, trained.setup.loaders, trained.setup.feature_map
    test = trained.result.test or {}
    model.eval()
    parts: dict[str, list] = {"embedding": [], "left": [], "right": []}
    seen = 0
    with torch.no_grad():
        for batch in loaders["valid"]:
            ops = model.analysis_operands(model.get_inputs(batch))
            for key in parts:
                parts[key].append(ops[key].float().cpu())
            seen += len(batch[feature_map.labels[0]])
            if seen >= samples:
                break
    rows = min(seen, samples)
    layers = parts["embedding"][0].shape[0] // parts["left"][0].shape[0]
    emb = torch.cat([p.reshape(layers, -1, p.shape[-1])[:, :] for p in parts["embedding"]], dim=1)
    emb = emb[:, :rows].reshape(-1, emb.shape[-1]).numpy().astype(np.float64)
    left = torch.cat(parts["left"])[:rows].numpy().astype(np.float64)
    right = torch.cat(parts["right"])[:rows].numpy().astype(np.float64)
    normalised = spectrum(emb)
    return {
        "expid": params["expid"],
        "model": params["model"],
        "generative": bool(getattr(model, "generative", True)),
        "dataset_id": params["dataset_id"],
        "samples": rows,
        "test": test,
        "information_abundance": information_abundance(normalised),
        "spectrum": normalised.tolist(),
        "redundancy": redundancy(left, right),
    }


def plot_spectra(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for res in results:
        values = np.asarray(res["spectrum"])
        values = np.log(np.clip(values, 1e-12, None))
        label = (
            f"{res['expid']} ({'GEN' if res['generative'] else 'DIS'}), IA={res['information_abundance']:.2f}"
        )
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set_xlabel("index k")
    ax.set_ylabel("log normalised singular value")
    ax.set_title(f"Embedding spectrum on {results[0]['dataset_id']} (validation sample)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results: list[dict], out_dir: str, name: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    json_path, png_path = os.path.join(out_dir, f"{name}.json"), os.path.join(out_dir, f"{name}.png")
    with open(json_path, "w") as fd:
        json.dump(results, fd, indent=2)
    plot_spectra(results, png_path)
    return json_path, png_path
