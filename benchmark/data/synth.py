"""Deterministic synthetic CTR data with a Criteo-like schema and a planted click model.

Columns: ``label, I1..I<n_numeric>, C1..C<n_categorical>`` (plus ``S1``, a ``^``-joined sequence,
when ``sequence: true``). Numerics are log-normal counts with missing values; categoricals are 8-hex
tokens drawn from Zipf-like distributions over skewed cardinalities (3 .. ``max_cardinality``), with
empty fields. The label comes from a planted logit with first-order weights, pairwise latent-factor
interactions, third-order products and numeric effects, so models that learn interactions
(FM, DNN, DCN) beat LR. The same ``seed`` gives byte-identical files.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from ..util import atomic_path

DEFAULTS = {
    "rows": 100_000,
    "n_numeric": 13,
    "n_categorical": 26,
    "max_cardinality": 20_000,
    "sequence": False,
    "seq_max_len": 5,
    "seed": 2023,
    "splits": [0.8, 0.1, 0.1],
    "missing_rate": 0.05,
    "latent_dim": 4,
    "positive_rate": 0.25,
}


def _cardinalities(n: int, max_card: int, rng: np.random.Generator) -> np.ndarray:
    # log-uniform from 3 to max_card, like Criteo's mix of tiny and huge fields
    return (
        np.unique(
            np.concatenate(
                [[3], np.exp(rng.uniform(np.log(3), np.log(max_card), n - 1)).astype(int), [max_card]]
            )
        )[:n]
        if n > 1
        else np.array([3])
    )


def _zipf_ids(card: int, rows: int, rng: np.random.Generator, s: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, card + 1) ** s
    p /= p.sum()
    return rng.choice(card, size=rows, p=p)


def generate(cfg: dict | None = None) -> pl.DataFrame:
    """The whole synthetic table (label first), deterministic in ``cfg['seed']``."""
    cfg = {**DEFAULTS, **(cfg or {})}
    rng = np.random.default_rng(int(cfg["seed"]))
    rows, k = int(cfg["rows"]), int(cfg["latent_dim"])
    n_cat, n_num = int(cfg["n_categorical"]), int(cfg["n_numeric"])
    cards = _cardinalities(n_cat, int(cfg["max_cardinality"]), rng)
    while len(cards) < n_cat:  # np.unique may merge equal draws
        cards = np.append(cards, cards[-1] + len(cards))
    cards = rng.permutation(cards)
    logit = np.zeros(rows)
    columns: dict[str, object] = {}
    ids_all, factors = [], []
    for f in range(n_cat):
        ids = _zipf_ids(int(cards[f]), rows, rng)
        w = rng.normal(0, 0.3, cards[f])
        v = rng.normal(0, 1.0 / np.sqrt(k), (cards[f], k))
        logit += w[ids]
        ids_all.append(ids)
        factors.append(v[ids])
        tokens = np.array([f"{x:08x}" for x in rng.integers(0, 2**32, cards[f], dtype=np.uint64)])
        col = tokens[ids].astype(object)
        col[rng.random(rows) < cfg["missing_rate"]] = None
        columns[f"C{f + 1}"] = col
    # pairwise interactions between a fixed set of field pairs (latent factors)
    n_pairs = max(1, n_cat)
    for _ in range(n_pairs):
        a, b = rng.choice(n_cat, 2, replace=False)
        logit += 1.2 * np.sum(factors[a] * factors[b], axis=1)
    # third-order terms
    for _ in range(max(1, n_cat // 4)):
        a, b, c = rng.choice(n_cat, 3, replace=False)
        logit += 1.5 * factors[a][:, 0] * factors[b][:, 0] * factors[c][:, 0] * k
    for j in range(n_num):
        raw = np.floor(rng.lognormal(mean=1.0 + j % 3, sigma=1.0, size=rows))
        effect = rng.normal(0, 0.3)
        inter = rng.integers(0, n_cat) if n_cat else None
        z = (np.log1p(raw) - np.log1p(raw).mean()) / (np.log1p(raw).std() + 1e-9)
        logit += effect * z
        if inter is not None:
            logit += 0.4 * z * factors[inter][:, 1] * np.sqrt(k)
        missing = rng.random(rows) < cfg["missing_rate"] * 2
        values = raw.astype(float)
        values[missing] = np.nan
        columns[f"I{j + 1}"] = values
    if cfg["sequence"]:
        vocab = max(10, int(cfg["max_cardinality"]) // 10)
        lengths = rng.integers(0, int(cfg["seq_max_len"]) + 3, rows)
        items = _zipf_ids(vocab, int(lengths.sum()), rng)
        item_w = rng.normal(0, 0.5, vocab)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sums = np.add.reduceat(item_w[items], starts) if len(items) else np.zeros(rows)
        sums[lengths == 0] = 0.0
        logit += sums / np.maximum(lengths, 1)
        tok = np.array([f"s{x}" for x in range(vocab)])
        seq = [("^".join(tok[items[s : s + n]]) if n else None) for s, n in zip(starts, lengths)]
        columns["S1"] = seq
    logit += rng.logistic(0, 0.5, rows)  # label noise
    threshold = np.quantile(logit, 1 - float(cfg["positive_rate"]))
    label = (logit > threshold).astype(np.int64)
    data = {"label": label}
    data.update({f"I{j + 1}": columns[f"I{j + 1}"] for j in range(n_num)})
    data.update({f"C{f + 1}": columns[f"C{f + 1}"] for f in range(n_cat)})
    if cfg["sequence"]:
        data["S1"] = columns["S1"]
    dtypes = {"label": pl.Int64} | {f"I{j + 1}": pl.Float64 for j in range(n_num)}
    frame = pl.DataFrame(
        {
            name: pl.Series(
                name,
                list(values) if name.startswith(("C", "S")) else values,
                dtype=dtypes.get(name, pl.String),
            )
            for name, values in data.items()
        }
    )
    return frame.with_columns([pl.col(f"I{j + 1}").fill_nan(None).cast(pl.Int64) for j in range(n_num)])


def write_splits(out_dir: str, cfg: dict | None = None) -> dict[str, str]:
    """Write train/valid/test CSVs (split by the configured fractions, in row order)."""
    cfg = {**DEFAULTS, **(cfg or {})}
    frame = generate(cfg)
    os.makedirs(out_dir, exist_ok=True)
    fr = np.asarray(cfg["splits"], dtype=float)
    fr = fr / fr.sum()
    n = frame.height
    n_train, n_valid = int(round(n * fr[0])), int(round(n * fr[1]))
    parts = {
        "train": frame.slice(0, n_train),
        "valid": frame.slice(n_train, n_valid),
        "test": frame.slice(n_train + n_valid),
    }
    paths = {}
    for split, part in parts.items():
        path = os.path.join(out_dir, f"{split}.csv")
        with atomic_path(path) as tmp:
            part.write_csv(tmp)
        paths[split] = path
    return paths


def dataset_config(dataset_id: str, cfg: dict, data_dir: str, min_categr_count: int = 1) -> dict:
    """A dataset-config section for files written by ``write_splits``."""
    cfg = {**DEFAULTS, **cfg}
    feature_cols = []
    if cfg["n_numeric"]:
        feature_cols.append(
            {
                "name": [f"I{j + 1}" for j in range(cfg["n_numeric"])],
                "active": True,
                "dtype": "float",
                "type": "numeric",
                "normalizer": "StandardScaler",
            }
        )
    feature_cols.append(
        {
            "name": [f"C{f + 1}" for f in range(cfg["n_categorical"])],
            "active": True,
            "dtype": "str",
            "type": "categorical",
        }
    )
    if cfg["sequence"]:
        feature_cols.append(
            {
                "name": "S1",
                "active": True,
                "dtype": "str",
                "type": "sequence",
                "splitter": "^",
                "max_len": cfg["seq_max_len"],
                "padding": "pre",
            }
        )
    return {
        "data_root": data_dir,
        "data_format": "csv",
        "train_data": os.path.join(data_dir, "train.csv"),
        "valid_data": os.path.join(data_dir, "valid.csv"),
        "test_data": os.path.join(data_dir, "test.csv"),
        "min_categr_count": min_categr_count,
        "feature_cols": feature_cols,
        "label_col": {"name": "label", "dtype": "float"},
        "synthetic": cfg,
    }


def write_from_params(params: dict) -> None:
    """Generate the raw files a dataset config with a ``synthetic:`` block points at."""
    out_dir = os.path.dirname(params["train_data"])
    write_splits(out_dir, params.get("synthetic") or {})


# --------------------------------------------------------------------------------------------------
# Criteo-shaped data at scale (benchmarks): the real per-column cardinalities, skew and missing rates

CRITEO_ROWS = 45_840_617
# Kaggle Criteo's distinct values per categorical column over its 45,840,617 rows
CRITEO_CARDINALITY = [
    1460,
    583,
    10131227,
    2202608,
    305,
    24,
    12517,
    633,
    3,
    93145,
    5683,
    8351593,
    3194,
    27,
    14992,
    5461306,
    10,
    5652,
    2173,
    4,
    7046547,
    18,
    15,
    286181,
    105,
    142572,
]
# share of empty fields per categorical column (Kaggle Criteo, rounded)
CRITEO_CAT_MISSING = [
    0.0,
    0.0,
    0.034,
    0.034,
    0.0,
    0.121,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.034,
    0.0,
    0.0,
    0.0,
    0.034,
    0.0,
    0.0,
    0.44,
    0.44,
    0.034,
    0.763,
    0.0,
    0.034,
    0.44,
    0.44,
]
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex8(values: np.ndarray) -> pl.Series:
    """uint32 values as 8-character lower-case hex tokens, vectorised (no per-value Python)."""
    v = values.astype(np.uint32)
    nibbles = np.stack([(v >> np.uint32(shift)) & np.uint32(15) for shift in range(28, -4, -4)], axis=1)
    chars = np.ascontiguousarray(_HEX[nibbles])
    return pl.Series(chars.view("S8").ravel()).cast(pl.String)


def _mix32(x: np.ndarray, seed: int) -> np.ndarray:
    """A bijective 32-bit mixer: rank -> a random-looking token id, distinct per column seed."""
    x = (x.astype(np.uint64) + np.uint64(seed * 0x9E3779B9)) & np.uint64(0xFFFFFFFF)
    for mult in (0x85EBCA6B, 0xC2B2AE35):
        x ^= x >> np.uint64(16)
        x = (x * np.uint64(mult)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return x


def criteo_profile_column(index: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Token ids (uint32) of categorical column ``C<index+1>`` for ``rows`` rows.

    A column with K distinct values over Criteo's 45.8M rows draws from a Zipf-like head (P(rank r)
    ~ 1/r over 0.4*K values, or over K values when K is small) plus, for large K, a tail of fresh
    one-off values in 0.6*K/45.8M of the rows: distinct values then grow with the row count as in
    the real data (about K at 45.8M rows), and most of them occur fewer than ten times.
    """
    card = CRITEO_CARDINALITY[index]
    tail_share = 0.6 * card / CRITEO_ROWS if card > 100_000 else 0.0
    head = max(int(card * (0.4 if tail_share else 1.0)), 1)
    ranks = np.floor(np.exp(rng.random(rows) * np.log(head + 1))).astype(np.int64) - 1
    ids = _mix32(np.clip(ranks, 0, head - 1), seed=2 * index + 1)
    if tail_share:
        fresh = rng.random(rows) < tail_share
        ids[fresh] = _mix32(rng.integers(head, 2**32 - 1, int(fresh.sum()), dtype=np.uint64), 2 * index + 1)
    return ids


def write_criteo_profile(
    out_dir: str,
    rows: int,
    seed: int = 2023,
    splits=(0.8, 0.1, 0.1),
    chunk_rows: int = 1_000_000,
    label: str = "Label",
    train_files: int = 1,
) -> dict[str, str]:
    """``train/valid/test.csv`` in the Criteo_x4 layout (``Label, I1..I13, C1..C26``) with Kaggle
    Criteo's cardinality profile scaled to ``rows`` rows: integers log-normal with ~20% missing,
    categoricals 8-hex tokens with the real per-column distinct counts and empty-field rates.
    ``train_files > 1`` writes the train split as ``train/day_<k>.csv`` files (Criteo Terabyte's
    layout, with ``label``). Written in chunks (memory independent of ``rows``); the same seed gives
    identical files."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = [int(rows * s) for s in splits]
    counts[0] += rows - sum(counts)
    outputs = []  # (split, path, rows)
    if train_files > 1:
        os.makedirs(os.path.join(out_dir, "train"), exist_ok=True)
        per_file = [counts[0] // train_files + (k < counts[0] % train_files) for k in range(train_files)]
        outputs += [
            ("train", os.path.join(out_dir, "train", f"day_{k}.csv"), n) for k, n in enumerate(per_file)
        ]
    else:
        outputs.append(("train", os.path.join(out_dir, "train.csv"), counts[0]))
    outputs += [
        (split, os.path.join(out_dir, f"{split}.csv"), n) for split, n in zip(("valid", "test"), counts[1:])
    ]
    paths = {}
    for split, path, n_split in outputs:
        with atomic_path(path) as tmp, open(tmp, "wb") as fd:
            done = 0
            while done < n_split:
                n = min(chunk_rows, n_split - done)
                cols = {label: pl.Series((rng.random(n) < 0.256).astype(np.int8))}
                for i in range(13):
                    values = np.floor(rng.lognormal(1.5, 1.6, n)).astype(np.int64) - (2 if i == 1 else 0)
                    cols[f"I{i + 1}"] = pl.Series(values).scatter(np.flatnonzero(rng.random(n) < 0.2), None)
                for i in range(26):
                    tokens = hex8(criteo_profile_column(i, n, rng))
                    empty = np.flatnonzero(rng.random(n) < CRITEO_CAT_MISSING[i])
                    cols[f"C{i + 1}"] = tokens.scatter(empty, None) if len(empty) else tokens
                pl.DataFrame(cols).write_csv(fd, include_header=done == 0)
                done += n
        paths[split] = os.path.dirname(path) if split == "train" and train_files > 1 else path
    return paths
