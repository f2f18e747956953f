"""Initial weights as the papers' code draws them (FuxiCTR / the authors' repositories).

Each case builds a model, runs fuxictr's ``reset_parameters`` (as every zoo model's ``finish`` does)
and checks the statistics of one parameter against the initialiser the code uses.
"""

from __future__ import annotations

import math

import pytest
import torch

from model_zoo import get_model_class
from model_zoo.dlf.block_fusion import TokenMix
from model_zoo.testing import feature_map_from_vocab, model_kwargs


def build(name, num_fields, dim, **params):
    torch.manual_seed(0)
    fmap = feature_map_from_vocab({f"C{i}": 20 for i in range(num_fields)}, dim)
    return get_model_class(name)(fmap, **model_kwargs(embedding_dim=dim, **params))


@pytest.mark.parametrize(
    "kind, shape_std",
    [
        # FuxiCTR's FmFM: xavier_normal_ over the whole (P, d, d) / (P, d) tensor
        ("matrixed", lambda P, d: math.sqrt(2.0 / (d * d + P * d))),
        ("vectorized", lambda P, d: math.sqrt(2.0 / (d + P))),
    ],
)
def test_fmfm_pair_transforms_are_xavier_normal(kind, shape_std):
    F, d = 39, 10  # Criteo's 39 fields: P = 741, std about 0.016 for the matrices
    model = build("FmFM", F, d, field_interaction_type=kind)
    w = model.field_transform.detach()
    P = F * (F - 1) // 2
    assert w.shape[0] == P
    assert float(w.mean()) == pytest.approx(0.0, abs=3e-4)
    assert float(w.std()) == pytest.approx(shape_std(P, d), rel=0.02)
    if kind == "matrixed":
        assert float(w.std()) == pytest.approx(0.016, abs=5e-4)
        # not the identity start (which would make the model start as FM)
        diag = torch.diagonal(w, dim1=1, dim2=2)
        assert float(diag.mean()) == pytest.approx(0.0, abs=2e-3)


@pytest.mark.parametrize("n_in, n_out", [(39, 32), (96, 32), (32, 96)])
def test_dlf_token_mixing_is_kaiming_uniform(n_in, n_out):
    """torch's kaiming_uniform_ on the (n_in, n_out) matrix: U(+-sqrt(6 / n_out)), std sqrt(2 / n_out)."""
    torch.manual_seed(0)
    mix = TokenMix(n_in, n_out)
    w = mix.weight.detach()
    bound = math.sqrt(6.0 / n_out)
    assert float(w.abs().max()) <= bound
    assert float(w.abs().max()) > 0.97 * bound  # the support is the full interval
    assert float(w.std()) == pytest.approx(math.sqrt(2.0 / n_out), rel=0.05)


def test_dlf_model_token_matrices_keep_kaiming_init_after_reset():
    model = build("DLF", 12, 8)
    mixes = [m for m in model.modules() if isinstance(m, TokenMix)]
    assert mixes
    for mix in mixes:
        bound = math.sqrt(6.0 / mix.n_out)  # not U(+-1/sqrt(n_in)), torch's Linear default
        assert 0.9 * bound < float(mix.weight.detach().abs().max()) <= bound
