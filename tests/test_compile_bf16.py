"""Every registered model under the trainer's ``amp: bf16`` (CPU autocast) and ``compile: true`` (inductor),
and with no tensor made off the model's device in its training step.

For every registered model its ``<Model>_tiny`` expid, built on a tiny feature map from one seed,
``Trainer.train_step`` runs ``STEPS`` steps on fixed batches; the losses of the bf16 run and of the compiled
run are compared step by step with the fp32 eager run of the same model:

- bf16: |loss - loss_fp32| <= tol * max(1, |loss_fp32|) with tol = ``BF16_TOL[0]`` at the first step
  and ``BF16_TOL[1]`` after it. bfloat16 keeps 8 bits of mantissa (relative spacing 2^-8 = 0.0039): the
  first loss, from the same weights, differs by the forward's rounding alone (at most 0.004 over the
  zoo, measured); after an update the runs' weights differ too, since Adam's first steps move each
  weight by about the learning rate whatever the gradient's size, so a gradient near zero that rounds to
  the other sign moves the weight the other way (up to 0.035 after two steps, measured);
- compiled: ``COMPILE_TOL`` at every step (the same float32 arithmetic, summed in another order by
  inductor's fused kernels), with inductor's random numbers replaced by eager's (``fallback_random``)
  so dropout and the models' noise draw the same values.

The placement check runs the forward and the loss under a ``TorchFunctionMode`` that fails on any tensor a
factory function (``torch.zeros``, ``torch.arange``, ``torch.tensor`` ...) makes without a ``device`` and
without a tensor to take it from: on CUDA such a tensor would land on the CPU. The compiled run of every
model takes minutes on a CPU: it is marked ``compile`` and runs with ``make test-compile`` (which sets
``CTRBENCH_COMPILE_TEST=1``).
"""

from __future__ import annotations

import os
import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from benchmark.train import Trainer
from model_zoo import get_model_class, registry
from model_zoo.errors import ModelConfigError
from model_zoo.testing import feature_map_from_vocab
from tests.test_zoo_contracts import params_of
from tests.test_zoo_pinned import NOT_MODEL_KEYS, batch

STEPS = 3
BF16_TOL = (0.01, 0.05)  # first step, later steps
COMPILE_TOL = (1e-4, 1e-4)
MODELS = sorted(registry())
# the tiny dataset's field names (expids name fields, e.g. FinalMLP's fs2_context: [C1])
VOCAB = {f"C{i}": 7 + 3 * i for i in range(1, 7)}
NUMERIC = ["I1", "I2"]


def build(params: dict):
    kwargs = {k: v for k, v in params.items() if k not in NOT_MODEL_KEYS}
    kwargs.update(gpu=-1, verbose=0, model_root="/nonexistent")
    fmap = feature_map_from_vocab(VOCAB, int(params.get("embedding_dim") or 8), numeric=NUMERIC)
    return get_model_class(params["model"])(fmap, **kwargs), fmap


def losses(model_name: str, steps: int = STEPS, **settings) -> list[float]:
    """Losses of ``steps`` trainer steps of the model, built from seed 0, under ``settings`` (amp, compile)."""
    params = {**params_of(f"{model_name}_tiny"), **settings}
    torch.manual_seed(0)
    try:
        model, fmap = build(params)
    except ModelConfigError as exc:  # settings for more fields than the tiny map has
        pytest.skip(str(exc))
    trainer = Trainer(model, params)
    model.train()
    torch.manual_seed(1)  # the same dropout and noise draws in every run
    return [float(trainer.train_step(batch(fmap, seed=step))) for step in range(steps)]


def assert_close(got: list[float], want: list[float], tol: tuple[float, float], what: str) -> None:
    for step, (g, w) in enumerate(zip(got, want)):
        bound = tol[min(step, 1)] * max(1.0, abs(w))
        assert abs(g - w) <= bound, f"{what}: step {step} loss {g} vs fp32 eager {w}"


@pytest.mark.parametrize("model", MODELS)
def test_bf16_autocast_trains_like_fp32(model):
    fp32 = losses(model)
    bf16 = losses(model, amp="bf16")
    assert all(map(torch.isfinite, map(torch.tensor, bf16))), bf16
    assert_close(bf16, fp32, BF16_TOL, f"{model} amp=bf16")


@pytest.mark.compile
@pytest.mark.skipif(not os.environ.get("CTRBENCH_COMPILE_TEST"), reason="make test-compile runs it (minutes)")
@pytest.mark.parametrize("model", MODELS)
def test_compiled_model_trains_like_eager(model, monkeypatch):
    import torch._dynamo
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    torch._dynamo.reset()
    eager = losses(model)
    compiled = losses(model, compile=True)
    torch._dynamo.reset()
    assert_close(compiled, eager, COMPILE_TOL, f"{model} compile=true")


# ---- device placement ---------------------------------------------------------------------------
class StrayTensors(TorchFunctionMode):
    """Records each tensor made by a call with no tensor argument and no ``device`` (where in the zoo or
    fuxictr it was made): on a CUDA model that tensor would be on the CPU."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (
            isinstance(out, torch.Tensor)
            and kwargs.get("device") is None
            and not any(isinstance(a, torch.Tensor) for a in tree_leaves((args, kwargs)))
        ):
            frames = [
                f for f in traceback.extract_stack() if "model_zoo" in f.filename or "fuxictr" in f.filename
            ]
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            self.found.append(f"{getattr(func, '__name__', func)} at {where}")
        return out


def test_stray_tensor_check_finds_a_factory_without_device():
    with StrayTensors() as mode:
        x = torch.ones(3, device="cpu")
        x + torch.arange(3)  # the stray: no device, no tensor argument
        x.new_zeros(2), torch.zeros_like(x), torch.zeros(2, device=x.device)
    assert len(mode.found) == 1 and mode.found[0].startswith("arange")


@pytest.mark.parametrize("model", MODELS)
def test_training_step_makes_no_tensor_off_the_model_device(model):
    try:
        net, fmap = build(params_of(f"{model}_tiny"))
    except ModelConfigError as exc:
        pytest.skip(str(exc))
    data = batch(fmap)
    net.train()
    with StrayTensors() as mode:
        loss = net.compute_loss(net(data), net.get_labels(data))
    assert not mode.found, f"{model} makes tensors without a device: {sorted(set(mode.found))}"
    assert loss.device == net.device
