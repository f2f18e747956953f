"""Choose MaskFusion's SmoothL0 penalty lambda for a dataset: the pruned share it gives, per lambda.

The paper (App. I, Table 11) gives the gate g(x) = x^2 / (x^2 + eps), its SGD optimiser and the eps
schedule (0.1, times 0.999 a step, floor 5e-4), but no penalty weight. The pruned share is decided while
eps decays: a gate whose x falls below about sqrt(eps) before eps reaches its floor is trapped (near 0
the penalty acts as a weight decay of 2 lambda / (eps n d)), one that stays above saturates at g = 1,
where the penalty's gradient (2 lambda eps / (n d x^3)) no longer moves it. The floor is reached after
about 5,300 steps whatever the data set's size, so the first ``--steps`` (default 6,000) steps show
most of the share a full epoch ends with; the trajectory (steps:pruned) is printed because close to the
threshold lambda the collapse is still under way at 6,000 steps (run those with ``--steps 12000``).

    python scripts/calibrate_smoothl0.py --expid MaskFusion_DCN_smoothl0_synth --lambdas 0.1,0.2,0.3
    python scripts/calibrate_smoothl0.py --expid MaskFusion_DCN_smoothl0_synth --target 0.58 \\
        --lambdas 0.1,0.3 --iters 4          # bisect (in log lambda) for a target pruned share

Each lambda is a fresh model (same seed), trained by ctrbench's Trainer on the expid's train split;
the last columns are the valid AUC / logloss of the pruned model. Needs the dataset built or buildable.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from benchmark.config import load_config
from benchmark.runner import prepare_run
from benchmark.train import Trainer


def run_lambda(
    expid: str,
    lam: float,
    steps: int,
    sets: list[str],
    config: str = "config",
    log_every: int = 1000,
    data_root: str | None = None,
) -> dict:
    """Train ``steps`` steps at penalty ``lam``; the pruned share along the way and at the end."""
    overrides = [*sets, f"maskfusion.smooth_l0.lambda={lam}", "verbose=0"]
    params = load_config(config, expid, overrides, data_root)
    setup = prepare_run(params, splits=("train", "valid"))
    model = setup.model
    gate = getattr(model, "smooth_l0_gate", None)
    if gate is None:
        sys.exit(f"error: expid {expid} has no SmoothL0 gate; set maskfusion.smooth_l0.enabled=true")
    trainer = Trainer(model, params)
    model.train()
    batches, trail, start = iter(setup.loaders["train"]), [], time.perf_counter()
    for step in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(setup.loaders["train"])
            batch = next(batches)
        trainer.train_step(trainer._to_device(batch))
        trainer.state.total_steps += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            trail.append((step + 1, float(gate.eps), gate.sparsity()))
    metrics = trainer.evaluate(setup.loaders["valid"], ["AUC", "logloss"])
    return {
        "lambda": lam,
        "sparsity": gate.sparsity(),
        "mean_abs_x": float(gate.x.detach().abs().mean()),
        "trail": trail,
        "seconds": time.perf_counter() - start,
        **metrics,
    }


def show(result: dict) -> None:
    trail = "  ".join(f"{s}:{100 * p:.1f}%" for s, _, p in result["trail"])
    print(
        f"lambda {result['lambda']:<8.4g} pruned {100 * result['sparsity']:5.1f}%  "
        f"valid AUC {result['AUC']:.4f} logloss {result['logloss']:.4f}  "
        f"({result['seconds']:.0f} s)  steps:pruned {trail}",
        flush=True,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--expid", required=True)
    ap.add_argument("--config", default="config")
    ap.add_argument("--lambdas", default="0.1,0.2,0.3", help="comma-separated penalty weights")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--target", type=float, default=None, help="pruned share to bisect for (0-1)")
    ap.add_argument("--iters", type=int, default=4, help="bisection steps with --target")
    ap.add_argument("--set", action="append", default=[], help="key=value config override")
    ap.add_argument("--data-root", default=None, help="folder of the raw datasets (replaces data_root)")
    args = ap.parse_args(argv)
    lambdas = [float(v) for v in args.lambdas.split(",") if v.strip()]
    log_every = max(1, args.steps // 6)
    results = []

    def measure(lam: float) -> None:
        results.append(
            run_lambda(args.expid, lam, args.steps, args.set, args.config, log_every, args.data_root)
        )
        show(results[-1])

    for lam in lambdas:
        measure(lam)
    if args.target is not None:
        for _ in range(args.iters):
            below = [r for r in results if r["sparsity"] < args.target]
            above = [r for r in results if r["sparsity"] >= args.target]
            if not below or not above:
                print(
                    f"error: no lambda of {args.lambdas} brackets the target {args.target:.0%}; widen --lambdas",
                    file=sys.stderr,
                )
                return 2
            lo = max(below, key=lambda r: r["lambda"])["lambda"]
            hi = min(above, key=lambda r: r["lambda"])["lambda"]
            measure(math.sqrt(lo * hi))
        best = min(results, key=lambda r: abs(r["sparsity"] - args.target))
        print(
            f"closest to {args.target:.0%}: lambda {best['lambda']:.4g} ({100 * best['sparsity']:.1f}% pruned)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
