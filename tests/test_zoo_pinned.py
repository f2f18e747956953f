"""Every registered model, pinned: parameter count and a forward output with name-seeded weights.

For one expid per registered model (its settings as the config resolves them), the model is built on
a tiny feature map (six categorical fields, with and without two numeric ones); every parameter is then
set from a generator seeded by the parameter's own name (and the global seed fixed for models that
draw noise at evaluation), so the pinned output depends on the model's
structure, its parameter names (checkpoint keys) and its forward pass, not on the order in which
construction drew random numbers (initialisers may change without touching this file). A change of
structure or forward shows here as a changed count or output; refresh the file only for a change that
is meant: ``python -m tests.test_zoo_pinned --write``.
"""

from __future__ import annotations

import json
import os
import sys
import zlib

import pytest
import torch

from benchmark.config import list_expids, load_config
from model_zoo import get_model_class, registry
from model_zoo.errors import ModelConfigError
from model_zoo.testing import feature_map_from_vocab, random_batch
from tests.conftest import CONFIG

PINNED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo_pinned.json")
VOCAB = {f"c{i}": 7 + 3 * i for i in range(6)}
NUMERIC = ["n0", "n1"]
NOT_MODEL_KEYS = {"model", "feature_map", "dataset_id", "data_root", "train_data", "valid_data", "test_data"}


def one_expid_per_model() -> dict[str, str]:
    chosen = {}
    for expid in sorted(list_expids(CONFIG)):
        if expid.startswith("_"):
            continue
        model = load_config(CONFIG, expid, ["verbose=0"], "/nonexistent").get("model")
        chosen.setdefault(model, expid)
    return chosen


def batch(fmap, rows=16, seed=7):
    return random_batch(fmap, rows, seed, numeric=torch.rand)


def fingerprint(expid: str) -> dict:
    params = load_config(CONFIG, expid, ["verbose=0"], "/nonexistent")
    kwargs = {k: v for k, v in params.items() if k not in NOT_MODEL_KEYS}
    kwargs.update(gpu=-1, verbose=0, model_root="/nonexistent")
    dim = int(params.get("embedding_dim") or 8)
    out = {"model": params["model"]}
    for tag, numeric in (("numeric", NUMERIC), ("categorical", [])):
        fmap = feature_map_from_vocab(VOCAB, dim, numeric=numeric)
        try:
            model = get_model_class(params["model"])(fmap, **kwargs)
        except ModelConfigError as exc:  # e.g. settings for more fields than the tiny map has
            out[tag] = {"error": str(exc)}
            continue
        model.eval()
        torch.manual_seed(0)  # models that draw noise at evaluation (IBNet's masks) draw the same
        with torch.no_grad():  # each parameter by its checkpoint key (fused tables load per field)
            buffers = {name for name, _ in model.named_buffers()}
            state = {
                name: v
                if name in buffers
                else torch.randn(v.shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode())))
                * 0.1
                for name, v in model.state_dict().items()
            }
            model.load_state_dict(state)
            y = model(batch(fmap))["y_pred"]
        out[tag] = {"params": model.count_parameters(), "output_sum": round(float(y.double().sum()), 6)}
    return out


@pytest.fixture(scope="module")
def pinned():
    with open(PINNED) as fh:
        return json.load(fh)


def test_every_registered_model_is_pinned(pinned):
    assert sorted(v["model"] for v in pinned.values()) == sorted(registry())


@pytest.mark.parametrize("model", sorted(registry()))
def test_count_and_output_unchanged(pinned, model):
    expid = next(e for e, v in pinned.items() if v["model"] == model)
    got, want = fingerprint(expid), pinned[expid]
    for tag in ("numeric", "categorical"):
        if "error" in want[tag]:
            assert got[tag] == want[tag]
            continue
        assert got[tag]["params"] == want[tag]["params"], (expid, tag)
        want_sum = pytest.approx(want[tag]["output_sum"], rel=1e-6, abs=1e-6)
        assert got[tag]["output_sum"] == want_sum, (expid, tag)


if __name__ == "__main__" and "--write" in sys.argv:
    table = {expid: fingerprint(expid) for model, expid in sorted(one_expid_per_model().items())}
    with open(PINNED, "w") as fh:
        json.dump(table, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"{len(table)} models pinned in {PINNED}")
