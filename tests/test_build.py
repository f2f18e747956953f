"""The builder: ids equal fuxictr's FeatureProcessor, rebuild/reuse, atomicity, blocks, bad input."""

import json
import os
import textwrap

import numpy as np
import polars as pl
import pytest
from fuxictr.datasets import avazu, criteo

from benchmark.config import load_config
from benchmark.data import build as build_mod
from benchmark.data import h5io
from benchmark.data import vocab as vocab_mod
from benchmark.errors import CTRBenchError

ROWS = 600


class Ref(criteo.CustomizedFeatureProcessor, avazu.CustomizedFeatureProcessor):
    """fuxictr's own processors (module level so fit can pickle it)."""


def make_raw(folder, rows=ROWS, seed=0, label_values=(0, 1), nan_text=False):
    """A csv with every feature kind: numerics, string/int/float categoricals, sequences, Avazu hour."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    out = {}
    for split, n in (("train", rows), ("valid", rows // 3), ("test", rows // 3)):
        cat = rng.choice(["a", "b", "c", "d", "e", "f", ""], n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
        num = np.round(rng.lognormal(1, 1, n), 3).astype(object)
        num[rng.random(n) < 0.1] = "NaN" if nan_text else None
        seq = ["^".join(rng.choice(["x", "y", "z", "w", "v"], rng.integers(0, 7))) for _ in range(n)]
        hours = [
            f"1410{21 + int(d):02d}{int(h):02d}"
            for d, h in zip(rng.integers(0, 9, n), rng.integers(0, 24, n))
        ]
        frame = pl.DataFrame(
            {
                "label": rng.choice(label_values, n),
                "num_std": [None if v is None else str(v) for v in num],
                "num_minmax": rng.random(n).round(4),
                "num_raw": rng.integers(0, 50, n),
                "cat_str": cat,
                "cat_int": rng.integers(0, 30, n),
                "cat_float": rng.integers(0, 12, n).astype(float),
                "crit_num": rng.integers(-1, 500, n),
                "hour": hours,
                "seq_pre": seq,
                "seq_post": [s[::-1] for s in seq],
                "user": rng.integers(0, 20, n).astype(str),
            }
        )
        path = os.path.join(folder, f"{split}.csv")
        frame.write_csv(path)
        out[split] = path
    return out


FEATURES = """
    feature_cols:
      - {name: num_std, active: True, dtype: float, type: numeric, normalizer: StandardScaler}
      - {name: num_minmax, active: True, dtype: float, type: numeric, normalizer: MinMaxScaler}
      - {name: num_raw, active: True, dtype: float, type: numeric}
      - {name: cat_str, active: True, dtype: str, type: categorical, fill_na: ""}
      - {name: cat_int, active: True, dtype: int, type: categorical, min_categr_count: 15}
      - {name: cat_float, active: True, dtype: float, type: categorical}
      - {name: crit_num, active: True, dtype: float, type: categorical, preprocess: convert_to_bucket}
      - {name: hour, active: True, dtype: str, type: categorical, preprocess: convert_hour}
      - {name: weekday, active: True, dtype: str, type: categorical, preprocess: convert_weekday}
      - {name: seq_pre, active: True, dtype: str, type: sequence, splitter: "^", max_len: 4, padding: pre}
      - {name: seq_post, active: True, dtype: str, type: sequence, splitter: "^", max_len: 3, padding: post,
         share_embedding: seq_pre}
      - {name: user_meta, active: True, dtype: str, type: meta, preprocess: copy_from(user)}
    label_col: {name: label, dtype: float}
"""


def write_cfg(tmp_path, extra="", features=FEATURES):
    cfg = tmp_path / "config"
    (cfg / "dataset_config").mkdir(parents=True, exist_ok=True)
    (cfg / "model_config").mkdir(exist_ok=True)
    (cfg / "dataset_config" / "d.yaml").write_text(
        textwrap.dedent("""
        allkinds:
          data_root: ../raw/
          build_root: ../built/
          train_data: allkinds/train.csv
          valid_data: allkinds/valid.csv
          test_data: allkinds/test.csv
          min_categr_count: 2
        """)
        + textwrap.indent(textwrap.dedent(extra), "  ")
        + textwrap.indent(textwrap.dedent(features), "  ")
    )
    (cfg / "model_config" / "m.yaml").write_text(
        "E: {model: DNN, dataset_id: allkinds, group_id: user_meta}\n"
    )
    return str(cfg)


def params_for(tmp_path, *sets, extra="", features=FEATURES):
    cfg = write_cfg(tmp_path, extra, features)
    return load_config(cfg, "E", list(sets))


# every vocabulary on the frame path: sequences without shared embeddings, an embedding_dim and encoder
FRAME_FEATURES = (
    FEATURES.replace(",\n         share_embedding: seq_pre}", ", embedding_dim: 8}")
    .replace("max_len: 4, padding: pre}", "max_len: 0, padding: pre, feature_encoder: null}")
    .replace(
        "cat_float, active: True, dtype: float, type: categorical}",
        "cat_float, active: True, dtype: str, type: categorical, embedding_dim: 4}",
    )
)


@pytest.fixture
def raw(tmp_path):
    return make_raw(str(tmp_path / "raw" / "allkinds"))


def fuxictr_reference(params, tmp_path):
    """fuxictr's own FeatureProcessor fit + per-value transform (no Ray)."""
    specs, labels = build_mod.feature_specs(params), build_mod.label_specs(params)
    fp = Ref(
        feature_cols=specs,
        label_col=labels,
        dataset_id=params["dataset_id"],
        data_root=str(tmp_path / "ref"),
        group_id="user_meta",
    )
    frames = {s: fp.preprocess(fp.read_data(params[f"{s}_data"])) for s in h5io.SPLITS}
    meta = pl.concat([f.select(["user_meta"]) for f in frames.values()])
    fp.fit(frames["train"], meta_ddf=meta, min_categr_count=params["min_categr_count"])
    out = {}
    for split, frame in frames.items():
        df = frame.collect()
        out[split] = fp.transform({c: df[c].to_numpy() for c in df.columns})
    return fp, out


@pytest.mark.parametrize("features", [FEATURES, FRAME_FEATURES], ids=["shared-and-float", "all-frame"])
def test_ids_equal_fuxictr_feature_processor(tmp_path, raw, features):
    assert features is FEATURES or "share_embedding" not in features
    params = params_for(tmp_path, features=features)
    directory = build_mod.build(params, quiet=True)
    fp, ref = fuxictr_reference(params, tmp_path)
    ours_map = json.load(open(os.path.join(directory, "feature_map.json")))
    ref_map = json.load(open(fp.json_file))
    assert ours_map == ref_map
    assert json.load(open(os.path.join(directory, "feature_vocab.json"))) == json.load(open(fp.vocab_file))
    for split in h5io.SPLITS:
        ours = h5io.read_block(h5io.split_files(directory, split)[0])
        assert set(ours) == set(ref[split])
        for col, values in ref[split].items():
            expected = np.asarray(values, dtype=float)
            got = np.asarray(ours[col], dtype=float)
            if col.startswith("num"):
                np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=f"{split}/{col}")
            else:
                np.testing.assert_array_equal(got, expected, err_msg=f"{split}/{col}")


def test_reuse_and_rebuild_on_change(tmp_path, raw, caplog):
    params = params_for(tmp_path)
    directory = build_mod.build(params)
    stamp = os.path.getmtime(os.path.join(directory, "build_info.json"))
    with caplog.at_level("INFO", logger="ctrbench"):
        build_mod.build(params_for(tmp_path))
    assert "Reusing built data" in caplog.text
    assert os.path.getmtime(os.path.join(directory, "build_info.json")) == stamp
    changed = params_for(tmp_path, "min_categr_count=3")
    build_mod.build(changed, quiet=True)
    info = json.load(open(os.path.join(directory, "build_info.json")))
    assert info["key"] == build_mod.build_key(changed) != build_mod.build_key(params)


def test_interrupted_build_is_not_reused(tmp_path, raw, monkeypatch):
    params = params_for(tmp_path)
    calls = {"n": 0}
    original = build_mod.write_split

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(build_mod, "write_split", failing)
    with pytest.raises(KeyboardInterrupt):
        build_mod.build(params, quiet=True)
    target = build_mod.data_dir(params)
    assert not os.path.exists(target)
    assert not [
        d for d in os.listdir(params["build_root"]) if d.startswith(".") and ".readers" not in d
    ]  # no temp
    monkeypatch.setattr(build_mod, "write_split", original)
    build_mod.build(params, quiet=True)
    assert build_mod.read_info(target)["key"] == build_mod.build_key(params)


def test_blocks_match_single_file(tmp_path, raw):
    single = build_mod.build(params_for(tmp_path), quiet=True)
    whole = h5io.read_block(h5io.split_files(single, "train")[0])
    blocked = params_for(tmp_path, "data_block_size=128", "build_root=" + str(tmp_path / "blocks"))
    directory = build_mod.build(blocked, quiet=True)
    files = h5io.split_files(directory, "train")
    assert [os.path.basename(f) for f in files][:2] == ["part_00000.h5", "part_00001.h5"]
    assert [h5io.block_rows(f) for f in files] == [128, 128, 128, 128, 88]
    parts = [h5io.read_block(f) for f in files]
    for col in whole:
        np.testing.assert_array_equal(np.concatenate([p[col] for p in parts]), whole[col])


def test_streaming_build_equals_in_memory(tmp_path, raw, monkeypatch):
    in_memory = build_mod.build(params_for(tmp_path), quiet=True)
    monkeypatch.setattr(build_mod, "STREAM_CHUNK_ROWS", 100)
    streamed = build_mod.build(
        params_for(tmp_path, "build_in_memory=false", "build_root=" + str(tmp_path / "streamed")), quiet=True
    )
    for split in h5io.SPLITS:
        a = h5io.read_block(h5io.split_files(in_memory, split)[0])
        b = h5io.read_block(h5io.split_files(streamed, split)[0])
        for col in a:
            np.testing.assert_array_equal(a[col], b[col])


def test_valid_test_carved_from_train(tmp_path, raw):
    params = params_for(
        tmp_path,
        "valid_data=null",
        "test_data=null",
        "valid_size=0.1",
        "test_size=0.2",
        "split_type=random",
        "split_seed=3",
    )
    directory = build_mod.build(params, quiet=True)
    rows = build_mod.read_info(directory)["rows"]
    assert sum(rows.values()) == ROWS
    assert 30 <= rows["valid"] <= 90 and 80 <= rows["test"] <= 160
    again = build_mod.build(
        params_for(
            tmp_path,
            "valid_data=null",
            "test_data=null",
            "valid_size=0.1",
            "test_size=0.2",
            "split_type=random",
            "split_seed=3",
            "build_root=" + str(tmp_path / "again"),
        ),
        quiet=True,
    )
    assert build_mod.read_info(again)["rows"] == rows


# ---- bad input: one clear message, nothing already built is lost -----------------------------------


def test_label_outside_01(tmp_path):
    make_raw(str(tmp_path / "raw" / "allkinds"), label_values=(0, 1, 2))
    with pytest.raises(
        CTRBenchError, match=r"label column .label. in .*train.csv line \d+ has value 2, not 0 or 1"
    ):
        build_mod.build(params_for(tmp_path), quiet=True)


def test_missing_feature_column(tmp_path, raw):
    extra = "\n"
    cfg = write_cfg(tmp_path, extra, FEATURES + "  \n")
    params = load_config(cfg, "E", ["feature_cols=[{name: nope, type: categorical, dtype: str}]"])
    with pytest.raises(CTRBenchError, match="feature column 'nope' is not in .*train.csv"):
        build_mod.build(params, quiet=True)


def test_no_value_reaches_min_count(tmp_path, raw):
    params = params_for(tmp_path, "min_categr_count=100000")
    with pytest.raises(
        CTRBenchError,
        match="categorical column 'cat_str' in dataset 'allkinds'.*no value occurs min_categr_count",
    ):
        build_mod.build(params, quiet=True)


def test_block_size_larger_than_split_writes_one_block(tmp_path, raw):
    directory = build_mod.build(params_for(tmp_path, "data_block_size=300"), quiet=True)
    assert [h5io.block_rows(f) for f in h5io.split_files(directory, "train")] == [300, 300]
    assert [h5io.block_rows(f) for f in h5io.split_files(directory, "valid")] == [ROWS // 3]


def test_vocab_and_feature_map_files_byte_identical_to_fuxictr(tmp_path, raw):
    params = params_for(tmp_path)
    directory = build_mod.build(params, quiet=True)
    fp, _ = fuxictr_reference(params, tmp_path)
    for name in ("feature_vocab.json", "feature_map.json"):
        with (
            open(os.path.join(directory, name), "rb") as ours,
            open(os.path.join(fp.data_dir, name), "rb") as ref,
        ):
            assert ours.read() == ref.read(), name


def test_streamed_counts_merge_exactly(tmp_path, raw, monkeypatch):
    """Many batches whose counts are merged several times give the in-memory build's files and ids."""
    in_memory = build_mod.build(params_for(tmp_path), quiet=True)
    monkeypatch.setattr(build_mod, "STREAM_CHUNK_ROWS", 37)
    monkeypatch.setattr(vocab_mod, "MERGE_ROWS", 10)
    streamed = build_mod.build(
        params_for(tmp_path, "build_in_memory=false", "build_root=" + str(tmp_path / "streamed")), quiet=True
    )
    for name in ("feature_vocab.json", "feature_map.json"):
        with open(os.path.join(in_memory, name)) as a, open(os.path.join(streamed, name)) as b:
            assert a.read() == b.read()
    for split in h5io.SPLITS:
        a = h5io.read_block(h5io.split_files(in_memory, split)[0])
        b = h5io.read_block(h5io.split_files(streamed, split)[0])
        for col in a:
            np.testing.assert_array_equal(a[col], b[col])


@pytest.mark.parametrize(
    "values, min_count, na, expected",
    [
        (
            ["b", "a", "b", "c", "a", "b", ""],
            1,
            "",
            {"b": 1, "a": 2, "c": 3},
        ),  # (-count, value); '' is no token
        (["b", "a", "b", "c", "a", "b"], 2, "", {"b": 1, "a": 2}),
        ([5, 3, 3, 9, 0, 0, 0], 1, 0, {3: 1, 5: 2, 9: 3}),  # integers by value; fill 0 dropped
        (["é", 'q"', "x\\y", "é"], 1, "", {"é": 1, 'q"': 2, "x\\y": 3}),
    ],
)
def test_vocabulary_rule_equals_fuxictr_tokenizer(values, min_count, na, expected):
    from fuxictr.preprocess.tokenizer import Tokenizer

    counts = vocab_mod.count_values(pl.DataFrame({"value": values})).collect()
    frame = vocab_mod.vocabulary(counts, min_count, na)
    tok = Tokenizer(min_freq=min_count, na_value=na)
    tok.build_vocab(dict(zip(counts["value"].to_list(), counts["count"].to_list())))
    ours = dict(zip(frame["value"].to_list(), frame["id"].to_list()))
    assert ours == expected == {k: v for k, v in tok.vocab.items() if k not in ("__PAD__", "__OOV__")}
    frame_tok = vocab_mod.FrameTokenizer(frame, min_freq=min_count, na_value=na)
    assert frame_tok.vocab == tok.vocab and frame_tok.vocab_size() == tok.vocab_size()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"vocab-{os.getpid()}.json")
    vocab_mod.write_vocab_file(path, {"c": frame_tok})
    with open(path) as fd:
        assert fd.read() == json.dumps({"c": dict(sorted(tok.vocab.items(), key=lambda x: x[1]))}, indent=4)
    os.remove(path)


def test_build_key_ignores_spelled_out_defaults(tmp_path, raw):
    base = params_for(tmp_path)
    spelled = dict(base, data_block_size=0, min_categr_count=base.get("min_categr_count", 1))
    unset = {k: v for k, v in base.items() if k != "data_block_size"}
    assert (
        build_mod.build_key(spelled)
        == build_mod.build_key(unset)
        == build_mod.build_key(dict(base, data_block_size=None))
    )
    assert build_mod.build_key(dict(base, data_block_size=100)) != build_mod.build_key(base)


def test_in_memory_choice_follows_estimated_memory(tmp_path, raw, monkeypatch):
    params = params_for(tmp_path)
    monkeypatch.setattr(build_mod, "available_memory", lambda: 10**12)
    assert build_mod.choose_in_memory(params)[0] is True
    monkeypatch.setattr(build_mod, "available_memory", lambda: 1000)
    fits, why = build_mod.choose_in_memory(params)
    assert fits is False and "does not fit" in why
    assert build_mod.choose_in_memory(dict(params, build_in_memory=True)) == (True, "build_in_memory: True")


def test_missing_file_names_path(tmp_path):
    with pytest.raises(CTRBenchError, match=r"missing .*allkinds/train.csv"):
        build_mod.build(params_for(tmp_path), quiet=True)


def test_nan_text_is_missing(tmp_path):
    make_raw(str(tmp_path / "raw" / "allkinds"), nan_text=True)
    directory = build_mod.build(params_for(tmp_path), quiet=True)
    values = h5io.read_block(h5io.split_files(directory, "train")[0])["num_std"]
    assert np.isfinite(values).all()


def test_failed_rebuild_keeps_previous_build(tmp_path, raw):
    params = params_for(tmp_path)
    directory = build_mod.build(params, quiet=True)
    key = build_mod.read_info(directory)["key"]
    with pytest.raises(CTRBenchError):
        build_mod.build(params_for(tmp_path, "min_categr_count=100000"), quiet=True)
    assert build_mod.read_info(directory)["key"] == key
    assert h5io.split_files(directory, "train")


def test_legacy_fuxictr20_h5_directory_loads(tmp_path, raw):
    """A fuxictr-2.0 directory (feature_map.json + train/valid/test.h5, one dataset per column)."""
    import shutil

    from benchmark.data.loader import load_feature_map, make_loaders

    built = build_mod.build(params_for(tmp_path), quiet=True)
    legacy = tmp_path / "legacy" / "allkinds"
    legacy.mkdir(parents=True)
    shutil.copy(os.path.join(built, "feature_map.json"), legacy)
    for split in h5io.SPLITS:
        columns = h5io.read_block(h5io.split_files(built, split)[0])
        h5io.write_block(str(legacy / f"{split}.h5"), {k: v.astype(np.float64) for k, v in columns.items()})
    params = params_for(tmp_path, "data_format=h5", "build_root=" + str(tmp_path / "legacy"))
    directory = build_mod.build(params, quiet=True)
    assert directory == str(legacy)
    fmap = load_feature_map(directory, params)
    loaders = make_loaders(fmap, directory, dict(params, batch_size=64))
    batch = next(iter(loaders["train"]))
    assert batch["cat_str"].dtype.is_floating_point is False
    assert loaders["train"].num_samples == ROWS


def _split_into_files(raw, folder, n_files=3):
    """The train csv as a folder of ``n_files`` csv files (like Criteo Terabyte's days)."""
    frame = pl.read_csv(raw["train"], infer_schema=False)
    os.makedirs(folder, exist_ok=True)
    step = -(-frame.height // n_files)
    for i in range(n_files):
        frame.slice(i * step, step).write_csv(os.path.join(folder, f"day_{i}.csv"))
    return folder


def _columns(directory, split):
    blocks = [h5io.read_block(f) for f in h5io.split_files(directory, split)]
    return {c: np.concatenate([b[c] for b in blocks]) for c in blocks[0]}


@pytest.mark.parametrize("block", [0, 70])
@pytest.mark.parametrize("hashed", [False, True])
def test_multi_file_split_builds_files_in_parallel_identically(tmp_path, raw, block, hashed):
    folder = _split_into_files(raw, str(tmp_path / "raw" / "allkinds" / "train"))
    sets = [f"train_data={folder}", f"data_block_size={block}"] + (["hash_buckets=1000"] if hashed else [])
    reference = build_mod.build(
        params_for(tmp_path, *sets, "build_root=" + str(tmp_path / "mem")), quiet=True
    )
    built = {}
    for jobs in (1, 2):
        built[jobs] = build_mod.build(
            params_for(
                tmp_path,
                *sets,
                "build_in_memory=false",
                f"build_jobs={jobs}",
                "build_root=" + str(tmp_path / f"jobs{jobs}"),
            ),
            quiet=True,
        )
    if block:
        assert len(h5io.split_files(built[2], "train")) == 3 * -(-(ROWS // 3) // block)
    for split in h5io.SPLITS:
        ref, one, two = (_columns(d, split) for d in (reference, built[1], built[2]))
        for col in ref:
            np.testing.assert_array_equal(one[col], two[col], err_msg=f"{split}/{col}")
            np.testing.assert_array_equal(ref[col], one[col], err_msg=f"{split}/{col}")
    with (
        open(os.path.join(reference, "feature_vocab.json")) as a,
        open(os.path.join(built[2], "feature_vocab.json")) as b,
    ):
        assert a.read() == b.read()


def test_build_jobs_must_be_a_positive_integer(tmp_path, raw):
    with pytest.raises(CTRBenchError, match="build_jobs=0.5 .* must be a positive integer"):
        build_mod.build(params_for(tmp_path, "build_jobs=0.5"), quiet=True)


def test_processor_pickle_holds_the_fitted_state_only(tmp_path, raw):
    import pickle

    directory = build_mod.build(params_for(tmp_path), quiet=True)
    with open(os.path.join(directory, "feature_processor.pkl"), "rb") as fd:
        processor = pickle.load(fd)
    assert processor._train is None and processor.count_units is None
    tok = processor.processor_dict["cat_str::tokenizer"]
    vocab = json.load(open(os.path.join(directory, "feature_vocab.json")))["cat_str"]
    assert tok.encode_category(["a", "b", "zzz"]) == [vocab["a"], vocab["b"], vocab["__OOV__"]]


def test_fuxictr_layout_raw_files_in_the_dataset_folder_build_beside_them(tmp_path):
    """FuxiCTR keeps data/<dataset_id>/train.csv and builds next to it; with build_root left to its default
    the build goes to data/built/<dataset_id>/ instead of replacing the raw folder."""
    make_raw(str(tmp_path / "data" / "allkinds"))
    cfg = tmp_path / "exp" / "config"  # FuxiCTR's layout: exp/config/{dataset,model}_config.yaml
    cfg.mkdir(parents=True)
    text = textwrap.dedent("""
        allkinds:
          data_root: ../data/
          train_data: ../data/allkinds/train.csv
          valid_data: ../data/allkinds/valid.csv
          test_data: ../data/allkinds/test.csv
          min_categr_count: 2
        """) + textwrap.indent(textwrap.dedent(FEATURES), "  ")
    (cfg / "dataset_config.yaml").write_text(text)
    (cfg / "model_config.yaml").write_text("E: {model: DNN, dataset_id: allkinds, group_id: user_meta}\n")
    params = load_config(str(cfg), "E", [])
    directory = build_mod.build(params, quiet=True)
    assert directory == str(tmp_path / "data" / "built" / "allkinds")
    assert sorted(os.listdir(tmp_path / "data" / "allkinds")) == ["test.csv", "train.csv", "valid.csv"]
    with pytest.raises(CTRBenchError, match="lies inside the build directory"):
        build_mod.build(
            dict(params, build_root=str(tmp_path / "data"), _build_root_default=False), quiet=True
        )


# ---- a build is never swapped under a running job (table-driven: when the other config is built) --------

_REBUILD = """
import sys
from benchmark.config import load_config
from benchmark.data.build import build
from benchmark.errors import CTRBenchError
try:
    build(load_config(sys.argv[1], "E", sys.argv[2:]), quiet=True)
except CTRBenchError as exc:
    print(f"error: {exc}")
    sys.exit(2)
"""


def _rebuild_elsewhere(cfg, *sets):
    """Another process building another config of the same dataset into the same folder."""
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.run(
        [sys.executable, "-c", _REBUILD, cfg, *sets], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _batches(loader, n=None):
    out = []
    for i, batch in enumerate(loader):
        if n is not None and i >= n:
            break
        out.append({k: v.clone() for k, v in batch.items()})
    return out


@pytest.mark.parametrize("when", ["during-streaming", "before-loaders", "same-process"])
def test_build_is_never_swapped_under_a_running_job(tmp_path, raw, when):
    """A streaming job reads only the build it started with: another process's rebuild of another config
    (min_categr_count 1 instead of 2) waits its turn with one error line, a rebuild between the job's build
    and its loaders stops the job before it reads, and a swap it could not prevent (its own process) stops
    it at the next block instead of feeding it blocks of another build."""
    import shutil

    from benchmark.data import loader as loader_mod

    params = params_for(tmp_path, "data_block_size=64", "streaming=True", "batch_size=32")
    directory = build_mod.build(params, quiet=True)
    reference_dir = str(tmp_path / "reference" / "allkinds")
    shutil.copytree(directory, reference_dir)
    fmap = loader_mod.load_feature_map(directory, params)
    expected = _batches(loader_mod.make_loaders(fmap, reference_dir, params, splits=("train",))["train"])
    cfg = str(tmp_path / "config")
    other = ["data_block_size=64", "min_categr_count=1"]

    if when == "before-loaders":
        res = _rebuild_elsewhere(cfg, *other)
        assert res.returncode == 0, res.stdout + res.stderr
        with pytest.raises(CTRBenchError, match="holds another build of 'allkinds'"):
            loader_mod.make_loaders(fmap, directory, params, splits=("train",))
        return
    train = loader_mod.make_loaders(fmap, directory, params, splits=("train",))["train"]
    it = iter(train)
    seen = [{k: v.clone() for k, v in next(it).items()}]  # the first block is open
    if when == "during-streaming":
        res = _rebuild_elsewhere(cfg, *other)
        assert res.returncode == 2, res.stdout + res.stderr
        lines = [line for line in res.stdout.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "is being read by running job(s)" in lines[0], res.stdout
        assert "--build-root" in lines[0]
        seen += [{k: v.clone() for k, v in b.items()} for b in it]
        assert len(seen) == len(expected)
        for got, want in zip(seen, expected):
            for col in want:
                assert torch_equal(got[col], want[col]), col
        assert build_mod.read_info(directory)["key"] == build_mod.build_key(params)
        train.reader.close()  # the job has ended: the rebuild goes ahead
        build_mod.build(params_for(tmp_path, *other), quiet=True)
        assert build_mod.read_info(directory)["key"] != build_mod.build_key(params)
    else:
        build_mod.build(params_for(tmp_path, *other), quiet=True)
        with pytest.raises(CTRBenchError, match="was replaced by another build while this job read it"):
            list(it)


def torch_equal(a, b) -> bool:
    return bool((a == b).all()) and a.shape == b.shape
