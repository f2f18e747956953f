"""Datasets: registry vs configs, verify, prepare from every raw layout, builds of every layout, hashing.

Everything runs on small synthetic files with the exact headers and value formats of the real
downloads (CRLF line ends, missing values, empty fields included); the real Frappe_x1 valid/test and
the Avazu_x1 sample under ../shared/data are used when present.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import polars as pl
import pytest

from benchmark.config import load_dataset_config, load_sections
from benchmark.data import build as build_mod
from benchmark.data import downloads as downloads_mod
from benchmark.data import h5io, registry
from benchmark.data import prepare as prep
from benchmark.errors import CTRBenchError
from tests.conftest import CONFIG, REPO, SHARED_DATA, frappe_available


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTRBENCH_CACHE_DIR", str(tmp_path / "cache"))


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def ctrbench(*args, env_cache=None):
    env = dict(os.environ, COLUMNS="200")
    if env_cache:
        env["CTRBENCH_CACHE_DIR"] = env_cache
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def cli(*args, cache):
    """The ctrbench app in-process (output captured, a CTRBenchError left in .exception)."""
    from typer.testing import CliRunner

    from benchmark.cli import app

    return CliRunner().invoke(app, list(args), env={"CTRBENCH_CACHE_DIR": cache, "COLUMNS": "400"})


def built(dataset_id, data_root, build_root, *sets):
    """Build a registry dataset with the real config, files under data_root."""
    from benchmark.config import apply_overrides, parse_set

    params = load_dataset_config(CONFIG, dataset_id, str(data_root))
    apply_overrides(params, parse_set(list(sets)))
    params["build_root"] = str(build_root)
    directory = build_mod.build(params, quiet=True)
    return params, directory


def read_split(directory, split):
    parts = [h5io.read_block(f) for f in h5io.split_files(directory, split)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---- synthetic raw files with the real layouts -------------------------------------------------------


def criteo_rows(n, seed=0, label_col=True):
    """Kaggle/Terabyte TSV rows: label, 13 ints (some empty, some negative), 26 8-hex tokens (some empty)."""
    rng = np.random.default_rng(seed)
    hexes = [f"{x:08x}" for x in rng.integers(0, 2**32, 60)]
    rows = []
    for i in range(n):
        y = int(rng.random() < 0.25)
        ints = ["" if rng.random() < 0.1 else str(int(rng.integers(-2, 400))) for _ in range(13)]
        cats = ["" if rng.random() < 0.08 else hexes[int(rng.zipf(1.6)) % len(hexes)] for _ in range(26)]
        rows.append("\t".join(([str(y)] if label_col else []) + ints + cats))
    return rows


def write_text(path, lines, crlf=False, gz=False, final_newline=True):
    end = "\r\n" if crlf else "\n"
    data = (end.join(lines) + (end if final_newline else "")).encode()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as fd:
            fd.write(data)
    else:
        with open(path, "wb") as fd:
            fd.write(data)
    return path


def avazu_rows(n, seed=1):
    rng = np.random.default_rng(seed)
    rows = [",".join(registry.AVAZU_RAW_COLUMNS)]
    for i in range(n):
        day, hour = 21 + int(rng.integers(0, 10)), int(rng.integers(0, 24))
        vals = [
            str(10**18 + int(rng.integers(0, 10**15))),
            str(int(rng.random() < 0.17)),
            f"1410{day:02d}{hour:02d}",
            str(1005 + int(rng.integers(0, 3))),
            str(int(rng.integers(0, 3))),
        ]
        vals += [f"{int(rng.integers(0, 6)):08x}" for _ in range(6)]  # site_* and app_*
        vals += [
            f"{int(rng.integers(0, 40)):08x}",
            f"{int(rng.integers(0, 90)):08x}",
            f"m{rng.integers(0, 7)}",
        ]
        vals += [str(int(rng.integers(0, 3))), str(int(rng.integers(0, 3)))]
        vals += [str(int(rng.integers(15000, 15010))) for _ in range(8)]
        rows.append(",".join(vals))
    return rows


# ---- registry vs dataset configs ---------------------------------------------------------------------


def test_registry_and_dataset_configs_agree():
    sections = load_sections(CONFIG, "dataset_config")
    for dataset_id, info in registry.DATASETS.items():
        assert dataset_id in sections, dataset_id
        body, path = sections[dataset_id]
        assert os.path.basename(path) == info.config_file
        assert body.get("download"), f"{dataset_id} has no download line"
        params = load_dataset_config(CONFIG, dataset_id)
        split_set, located = downloads_mod.locate(
            dataset_id, {s: params.get(f"{s}_data") for s in h5io.SPLITS}, params["data_root"]
        )
        assert split_set.name == info.split_set and set(located) == set(info.splits)
        read = [params.get(f"{s}_data") for s in h5io.SPLITS if params.get(f"{s}_data")]
        for path in located.values():  # the config reads exactly the registry's files
            assert path in read
        header = set(split_set.header)
        specs = build_mod.feature_specs(params)
        for spec in specs:
            if spec.get("active", True) and not spec.get("preprocess", "").startswith("convert_week"):
                assert spec["name"] in header, (dataset_id, spec["name"])
        assert params["label_col"]["name"] in header
        if dataset_id != "frappe_x1_partial":
            assert body["data_root"] == "../data/" and not os.path.isabs(body["train_data"])
    # the ids other configs use
    for dataset_id in (
        "Criteo_x1",
        "Criteo_x4_001",
        "Criteo_x4_002",
        "Criteo_x4_ibnet",
        "Avazu_x1",
        "Avazu_x4_001",
        "Avazu_x4_002",
        "MovielensLatest_x1",
        "Frappe_x1",
        "KKBox_x1",
        "ML_1M",
        "Criteo_Terabyte",
    ):
        assert dataset_id in registry.DATASETS
    x4 = {d: load_dataset_config(CONFIG, d) for d in ("Criteo_x4_001", "Criteo_x4_002", "Criteo_x4_ibnet")}
    assert [x4[d]["min_categr_count"] for d in x4] == [10, 2, 2]
    assert all(
        s.get("preprocess") == "convert_to_bucket"
        for d in x4
        for s in build_mod.feature_specs(x4[d])
        if s["name"].startswith("I")
    )
    assert [load_dataset_config(CONFIG, d)["min_categr_count"] for d in ("Avazu_x4_001", "Avazu_x4_002")] == [
        2,
        1,
    ]


def test_frappe_partial_matches_bars_layout_and_says_not_comparable():
    params = load_dataset_config(CONFIG, "frappe_x1_partial")
    names = [s["name"] for s in build_mod.feature_specs(params)]
    assert tuple(["label"] + names) == registry.SPLIT_SETS["Frappe_x1"].header
    assert [s["type"] for s in build_mod.feature_specs(params)] == ["categorical"] * 10
    text = open(os.path.join(CONFIG, "dataset_config", "frappe.yaml")).read().lower()
    assert "not comparable to bars" in " ".join(text.split())
    assert "not comparable to bars" in registry.DATASETS["frappe_x1_partial"].processing.lower()


# ---- stratified folds ----------------------------------------------------------------------------------


def test_stratified_folds_follow_kfold_per_class():
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(0)
    for n in (7, 10, 1003):
        folds = prep.stratified_folds(np.zeros(n, dtype=np.int8))
        ref = np.empty(max(n, 10), dtype=np.int8)
        for k, (_, test) in enumerate(KFold(10, shuffle=True, random_state=2018).split(np.zeros(max(n, 10)))):
            ref[test] = k
        np.testing.assert_array_equal(folds, ref[:n])
    labels = (rng.random(5003) < 0.26).astype(np.int8)
    folds = prep.stratified_folds(labels)
    for cls in (0, 1):
        sub = folds[labels == cls]
        np.testing.assert_array_equal(sub, prep.stratified_folds(np.zeros(len(sub), dtype=np.int8)))
        sizes = np.bincount(sub, minlength=10)
        assert sizes.max() - sizes.min() <= 1 and sizes[0] == sizes.max()
    assert not np.array_equal(prep.stratified_folds(labels, seed=1), folds)


# ---- prepare: Kaggle Criteo ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["plain", "gz_crlf"])
def test_prepare_criteo_kaggle_to_x4(tmp_path, variant):
    rows = criteo_rows(600, seed=3)
    name = "train.txt.gz" if variant == "gz_crlf" else "train.txt"
    src = write_text(
        str(tmp_path / "raw" / name),
        rows,
        crlf=variant == "gz_crlf",
        gz=variant == "gz_crlf",
        final_newline=variant == "plain",
    )
    result = prep.prepare("Criteo_x4_001", str(tmp_path / "raw"), str(tmp_path / "data"))
    folder = tmp_path / "data" / "Criteo_x4"
    assert sorted(os.listdir(folder)) == ["test.csv", "train.csv", "valid.csv"]
    labels = np.array([int(r[0]) for r in rows], dtype=np.int8)
    folds = prep.stratified_folds(labels)
    expected = {"test": [0], "valid": [1], "train": list(range(2, 10))}
    for split, fold_ids in expected.items():
        lines = open(folder / f"{split}.csv", "rb").read().decode().split("\n")
        assert lines[0] == "Label," + ",".join(registry.CRITEO_COLUMNS) and lines[-1] == ""
        want = [rows[i].replace("\t", ",") for k in fold_ids for i in np.flatnonzero(folds == k)]
        assert lines[1:-1] == want, split
    sizes = np.bincount(folds, minlength=10)
    assert {c.split: c.rows for c in result.checks} == {
        "train": sizes[2:].sum(),
        "valid": sizes[1],
        "test": sizes[0],
    }
    assert abs(sizes[0] - 60) <= 2 and abs(sizes[2:].sum() - 480) <= 4
    assert all(c.status == "mismatch" and c.expected_md5 for c in result.checks)  # not the real data
    assert not [f for f in os.listdir(folder) if f.startswith(".")]
    again = prep.prepare("Criteo_x4_001", src, str(tmp_path / "again"))
    assert [md5(p) for p in again.files.values()] == [md5(folder / f"{s}.csv") for s in again.files]
    # the prepared split builds with the BARS processing: I-columns bucketed as categoricals
    params, directory = built("Criteo_x4_001", tmp_path / "data", tmp_path / "built", "min_categr_count=1")
    fmap = json.load(open(os.path.join(directory, "feature_map.json")))
    assert fmap["num_fields"] == 39 and build_mod.read_info(directory)["rows"] == {
        "train": sizes[2:].sum(),
        "valid": sizes[1],
        "test": sizes[0],
    }
    vocab = json.load(open(os.path.join(directory, "feature_vocab.json")))
    i2 = {int(k) for k in vocab["I2"] if not k.startswith("__")}
    train_i2 = pl.read_csv(folder / "train.csv", infer_schema=False)["I2"].drop_nulls().cast(int)
    # fill_na 0 is also the tokenizer's NA token, so 0 (and missing) map to OOV, as in fuxictr
    assert i2 == {int(np.floor(np.log(v) ** 2)) if v > 2 else v for v in train_i2} - {0}


def test_prepare_criteo_rejects_damaged_lines(tmp_path):
    rows = criteo_rows(50, seed=4)
    rows[17] = rows[17].rsplit("\t", 1)[0]  # 39 fields
    write_text(str(tmp_path / "a" / "train.txt"), rows)
    with pytest.raises(CTRBenchError, match=r"line 18 has 39 fields, expected 40"):
        prep.prepare("Criteo_x4_002", str(tmp_path / "a"), str(tmp_path / "out"))
    rows = criteo_rows(50, seed=4)
    rows[5] = "2" + rows[5][1:]
    write_text(str(tmp_path / "b" / "train.txt"), rows)
    with pytest.raises(CTRBenchError, match=r"line 6: label is not 0 or 1"):
        prep.prepare("Criteo_x4_002", str(tmp_path / "b" / "train.txt"), str(tmp_path / "out"))
    out = tmp_path / "out" / "Criteo_x4"
    assert not out.exists() or not os.listdir(out)  # nothing written, no temp files left
    (tmp_path / "dac.tar.gz").write_bytes(b"not extracted")
    with pytest.raises(CTRBenchError, match="is an archive; extract train.txt from it first"):
        prep.prepare("Criteo_x4", str(tmp_path / "dac.tar.gz"), str(tmp_path / "out"))


def test_prepare_refuses_to_overwrite_and_cleans_up(tmp_path, monkeypatch):
    write_text(str(tmp_path / "raw" / "train.txt"), criteo_rows(40))
    prep.prepare("Criteo_x4", str(tmp_path / "raw"), str(tmp_path / "data"))
    with pytest.raises(CTRBenchError, match="already exists; pass --force"):
        prep.prepare("Criteo_x4", str(tmp_path / "raw"), str(tmp_path / "data"))

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "finish_folds", boom)
    before = {f: md5(tmp_path / "data" / "Criteo_x4" / f) for f in ("train.csv", "valid.csv", "test.csv")}
    with pytest.raises(KeyboardInterrupt):
        prep.prepare("Criteo_x4", str(tmp_path / "raw"), str(tmp_path / "data"), force=True)
    assert sorted(os.listdir(tmp_path / "data" / "Criteo_x4")) == sorted(before)  # no temp or scratch left
    assert {f: md5(tmp_path / "data" / "Criteo_x4" / f) for f in before} == before


# ---- prepare: Kaggle Avazu -> Avazu_x4 and its BARS processing ----------------------------------------


def test_prepare_avazu_kaggle_to_x4_and_build(tmp_path):
    rows = avazu_rows(400)
    write_text(str(tmp_path / "raw" / "train.gz"), rows, gz=True)
    result = prep.prepare("Avazu_x4_001", str(tmp_path / "raw"), str(tmp_path / "data"))
    labels = np.array([int(r.split(",")[1]) for r in rows[1:]], dtype=np.int8)
    folds = prep.stratified_folds(labels)
    train = open(tmp_path / "data" / "Avazu_x4" / "train.csv").read().splitlines()
    assert train[0] == rows[0]
    assert train[1:] == [rows[1 + i] for k in range(2, 10) for i in np.flatnonzero(folds == k)]
    assert sum(c.rows for c in result.checks) == 400
    params, directory = built("Avazu_x4_001", tmp_path / "data", tmp_path / "built", "min_categr_count=1")
    fmap = json.load(open(os.path.join(directory, "feature_map.json")))
    assert fmap["num_fields"] == 24 and "id" not in [list(f)[0] for f in fmap["features"]]
    vocab = json.load(open(os.path.join(directory, "feature_vocab.json")))
    data = read_split(directory, "test")
    inverse = {name: {v: k for k, v in vocab[name].items()} for name in ("hour", "weekday", "weekend")}
    raw_test = open(tmp_path / "data" / "Avazu_x4" / "test.csv").read().splitlines()[1:]
    for i, line in enumerate(raw_test):
        stamp = line.split(",")[2]
        day = datetime.date(2014, 10, int(stamp[4:6]))
        assert int(inverse["hour"][int(data["hour"][i])]) == int(stamp[6:8])
        assert int(inverse["weekday"][int(data["weekday"][i])]) == day.isoweekday() % 7  # Sunday = 0
        assert int(inverse["weekend"][int(data["weekend"][i])]) == int(day.isoweekday() >= 6)


def test_crlf_and_lf_files_build_the_same_ids(tmp_path):
    rows = avazu_rows(300, seed=5)
    for name, crlf in (("lf", False), ("crlf", True)):
        for split, part in (
            ("train", rows[:201]),
            ("valid", rows[:1] + rows[201:251]),
            ("test", rows[:1] + rows[251:]),
        ):
            write_text(str(tmp_path / name / "Avazu_x4" / f"{split}.csv"), part, crlf=crlf)
    _, a = built("Avazu_x4_002", tmp_path / "lf", tmp_path / "b_lf")
    _, b = built("Avazu_x4_002", tmp_path / "crlf", tmp_path / "b_crlf")
    assert json.load(open(os.path.join(a, "feature_vocab.json"))) == json.load(
        open(os.path.join(b, "feature_vocab.json"))
    )
    for split in h5io.SPLITS:
        x, y = read_split(a, split), read_split(b, split)
        for col in x:
            np.testing.assert_array_equal(x[col], y[col])


def test_streamed_build_is_bounded_and_equals_in_memory(tmp_path, monkeypatch):
    """Streamed builds count vocabularies in one batched pass and append to one h5 file per split."""
    import h5py

    rows = avazu_rows(500, seed=13)
    for split, part in (
        ("train", rows[:301]),
        ("valid", rows[:1] + rows[301:401]),
        ("test", rows[:1] + rows[401:]),
    ):
        write_text(str(tmp_path / "raw" / "Avazu_x4" / f"{split}.csv"), part)
    _, memory = built("Avazu_x4_001", tmp_path / "raw", tmp_path / "memory", "min_categr_count=2")
    monkeypatch.setattr(build_mod, "STREAM_CHUNK_ROWS", 64)
    calls = []
    original = build_mod.Processor._count_frame
    monkeypatch.setattr(
        build_mod.Processor, "_count_frame", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    _, streamed = built(
        "Avazu_x4_001", tmp_path / "raw", tmp_path / "streamed", "min_categr_count=2", "build_in_memory=false"
    )
    assert calls == [1]
    calls.clear()
    assert json.load(open(os.path.join(memory, "feature_vocab.json"))) == json.load(
        open(os.path.join(streamed, "feature_vocab.json"))
    )
    with h5py.File(os.path.join(streamed, "train.h5")) as hf:
        assert hf["site_id"].chunks is not None and hf["site_id"].shape == (300,)
    _, blocks = built(
        "Avazu_x4_001",
        tmp_path / "raw",
        tmp_path / "blocks",
        "min_categr_count=2",
        "build_in_memory=false",
        "data_block_size=50",
    )
    assert [h5io.block_rows(f) for f in h5io.split_files(blocks, "train")] == [50] * 6
    for split in h5io.SPLITS:
        a, b, c = read_split(memory, split), read_split(streamed, split), read_split(blocks, split)
        for col in a:
            np.testing.assert_array_equal(a[col], b[col], err_msg=f"{split}/{col}")
            np.testing.assert_array_equal(a[col], c[col], err_msg=f"{split}/{col}")


# ---- prepare: KKBox -------------------------------------------------------------------------------------


def write_kkbox_raw(folder, n=300, seed=6):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    users = [f"u{i:03d}+/=" for i in range(25)]
    songs = [f"s{i:04d}X=" for i in range(60)]
    artists = ['Jay Chou', 'A-Lin', '"Mayday"', 'Eason | Jolin', 'B\\C', 'Various Artists; D & E']
    with open(os.path.join(folder, "members.csv"), "w") as fd:
        fd.write("msno,city,bd,gender,registered_via,registration_init_time,expiration_date\n")
        for i, u in enumerate(users[:-2]):  # two users have no member row
            bd = [0, 25, 37, 1051, -43, 17][i % 6]
            fd.write(
                f"{u},{1 + i % 5},{bd},{['male', 'female', ''][i % 3]},{[7, 9, 4][i % 3]},2015010{1 + i % 9},"
                f"2017093{i % 2}\n"
            )
    with open(os.path.join(folder, "songs.csv"), "w") as fd:
        fd.write("song_id,song_length,genre_ids,artist_name,composer,lyricist,language\n")
        for i, s in enumerate(songs[:-5]):  # five songs have no song row
            genres = "|".join(str(400 + (i + k) % 7) for k in range(1 + i % 4))
            extra = ",x" if i == 3 else ""  # a line with one field too many (cut, as BARS does)
            fd.write(
                f"{s},{200000 + i},{genres},{artists[i % 6]},{artists[(i + 1) % 6] if i % 2 else ''},,"
                f"{['3.0', '-1.0', '52.0', ''][i % 4]}{extra}\n"
            )
    with open(os.path.join(folder, "song_extra_info.csv"), "w") as fd:
        fd.write("song_id,name,isrc\n")
        for i, s in enumerate(songs):
            isrc = f"{['TWA53', 'USUM7', 'JPB60'][i % 4]}{i:07d}" if i % 4 < 3 else ""
            fd.write(f"{s},Song {i % 40},{isrc}\n")
    with open(os.path.join(folder, "train.csv"), "w") as fd:
        fd.write("msno,song_id,source_system_tab,source_screen_name,source_type,target\n")
        for i in range(n):
            fd.write(
                f"{users[int(rng.integers(0, 25))]},{songs[int(rng.integers(0, 60))]},"
                f"{['my library', 'discover', ''][i % 3]},Local playlist more,local-library,"
                f"{int(rng.random() < 0.5)}\n"
            )


def test_prepare_kkbox_raw_to_x1_and_build(tmp_path):
    write_kkbox_raw(str(tmp_path / "raw"))
    result = prep.prepare("KKBox_x1", str(tmp_path / "raw"), str(tmp_path / "data"))
    assert sum(c.rows for c in result.checks) == 300
    frames = {
        s: pl.read_csv(tmp_path / "data" / "KKBox_x1" / f"{s}.csv", infer_schema=False) for s in h5io.SPLITS
    }
    assert tuple(frames["train"].columns) == registry.KKBOX_X1_COLUMNS
    full = pl.concat(list(frames.values()))
    train_raw = pl.read_csv(tmp_path / "raw" / "train.csv", infer_schema=False)
    users = sorted(
        set(train_raw["msno"])
        | {l.split(",")[0] for l in open(tmp_path / "raw" / "members.csv").read().splitlines()[1:]}
    )
    assert set(full["msno"].cast(int)) <= set(range(1, len(users) + 1))
    assert full["label"].cast(int).sum() == train_raw["target"].cast(int).sum()
    test = frames["test"]
    first = test.row(0, named=True)
    # genre '|' -> ' ', persons split on | \ / & ; and numbered, language as an integer string
    assert all("|" not in g for g in full["genre_ids"].fill_null(""))
    assert {len(a.split()) for a in full["artist_name"].fill_null("") if a} == {1, 2, 3}
    assert set(full["language"].fill_null("")) <= {"3", "-1", "52", ""}
    assert first["label"] in ("0", "1")
    params, directory = built("KKBox_x1", tmp_path / "data", tmp_path / "built", "min_categr_count=1")
    fmap = json.load(open(os.path.join(directory, "feature_map.json")))
    specs = {list(f)[0]: list(f.values())[0] for f in fmap["features"]}
    assert fmap["num_fields"] == 13 and specs["genre_ids"]["max_len"] == 3
    vocab = json.load(open(os.path.join(directory, "feature_vocab.json")))
    assert set(vocab["isrc"]) - {"__PAD__", "__OOV__"} <= {"TW", "US", "JP"}
    assert set(vocab["bd"]) - {"__PAD__", "__OOV__"} <= {"1", "2", "3", "4", "5", "6", "7"}
    seq = read_split(directory, "train")["genre_ids"]
    genres = frames["train"]["genre_ids"].fill_null("")
    assert seq.shape[1] == 3 and (seq > 0).sum(axis=1).tolist() == [min(len(g.split()), 3) for g in genres]
    assert 0 < sum(g == "" for g in genres) < len(genres)  # songs without a songs.csv row


# ---- prepare: ML-1M ----------------------------------------------------------------------------------------


def write_ml1m_zip(path, n_ratings=250, seed=7):
    rng = np.random.default_rng(seed)
    ratings = (
        "\n".join(
            f"{1 + int(rng.integers(0, 30))}::{1 + int(rng.integers(0, 40))}::"
            f"{1 + int(rng.integers(0, 5))}::{978300000 + i}"
            for i in range(n_ratings)
        )
        + "\n"
    )
    users = (
        "\n".join(
            f"{u}::{'FM'[u % 2]}::{[1, 18, 25, 35][u % 4]}::{u % 21}::{10000 + u}-{u:04d}"
            for u in range(1, 31)
        )
        + "\n"
    )
    movies = (
        "\n".join(
            f"{m}::{'Amélie, Le fabuleux destin' if m == 3 else f'Movie {m} (1999)'}::"
            f"{'Comedy|Romance' if m % 2 else 'Drama'}"
            for m in range(1, 41)
        )
        + "\n"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", ratings.replace("\n", "\r\n"))
        zf.writestr("ml-1m/users.dat", users)
        zf.writestr("ml-1m/movies.dat", movies.encode("latin-1"))
    return ratings


def test_prepare_ml1m_from_zip_and_build(tmp_path):
    ratings = write_ml1m_zip(str(tmp_path / "ml-1m.zip"))
    result = prep.prepare("ML_1M", str(tmp_path / "ml-1m.zip"), str(tmp_path / "data"))
    assert {c.split: c.rows for c in result.checks} == {"train": 200, "valid": 25, "test": 25}
    assert all(c.status == "mismatch" and "rows instead of" in c.message for c in result.checks)
    frames = {
        s: pl.read_csv(tmp_path / "data" / "ML_1M" / f"{s}.csv", infer_schema=False) for s in h5io.SPLITS
    }
    full = pl.concat(list(frames.values())).sort("Timestamp")
    raw = [l.split("::") for l in ratings.splitlines()]
    assert full["Rating"].to_list() == [r[2] for r in raw]
    assert full["label"].to_list() == [str(int(int(r[2]) >= 4)) for r in raw]
    amelie = full.filter(pl.col("MovieID") == "3")
    assert amelie.height == 0 or amelie["Title"][0] == "Amélie, Le fabuleux destin"
    for split, frame in frames.items():  # file order kept inside each split
        assert frame["Timestamp"].to_list() == sorted(frame["Timestamp"].to_list())
    params, directory = built("ML_1M", tmp_path / "data", tmp_path / "built", "min_categr_count=1")
    assert json.load(open(os.path.join(directory, "feature_map.json")))["num_fields"] == 5


# ---- prepare: Criteo Terabyte and the hashed, blocked, streamed build --------------------------------------


def test_prepare_terabyte_days_and_hashed_streaming_build(tmp_path, monkeypatch):
    src = tmp_path / "tb"
    day_rows = {}
    for day in range(24):
        rows = criteo_rows(30 if day < 23 else 41, seed=100 + day)
        day_rows[day] = rows
        write_text(str(src / (f"day_{day}.gz" if day % 3 == 0 else f"day_{day}")), rows, gz=day % 3 == 0)
    result = prep.prepare("Criteo_Terabyte", str(src), str(tmp_path / "data"), neg_sample_rate=0.5)
    out = tmp_path / "data" / "Criteo_Terabyte"
    assert sorted(os.listdir(out / "train")) == [f"day_{d:02d}.csv" for d in range(23)]
    kept_neg = total_neg = 0
    for day in range(23):
        lines = open(out / "train" / f"day_{day:02d}.csv").read().splitlines()
        assert lines[0] == "label," + ",".join(registry.CRITEO_COLUMNS)
        src_lines = [r.replace("\t", ",") for r in day_rows[day]]
        assert [l for l in src_lines if l[0] == "1"] == [
            l for l in lines[1:] if l[0] == "1"
        ]  # positives kept
        it = iter(src_lines)
        assert all(any(l == s for s in it) for l in lines[1:])  # order kept
        kept_neg += sum(l[0] == "0" for l in lines[1:])
        total_neg += sum(l[0] == "0" for l in src_lines)
    assert 0.3 < kept_neg / total_neg < 0.7
    test = open(out / "test.csv").read().splitlines()[1:]
    valid = open(out / "valid.csv").read().splitlines()[1:]
    assert test + valid == [r.replace("\t", ",") for r in day_rows[23]] and len(test) == 21
    assert {c.split: c.status for c in result.checks}["train"] == "present"
    # build: day by day, in blocks, streamed, C1-C26 hashed (DLRM hex modulo)
    monkeypatch.setattr(build_mod, "STREAM_CHUNK_ROWS", 100)
    params, directory = built(
        "Criteo_Terabyte",
        tmp_path / "data",
        tmp_path / "built",
        "hash_buckets=97",
        "data_block_size=128",
        "build_in_memory=false",
    )
    fmap = json.load(open(os.path.join(directory, "feature_map.json")))
    specs = {list(f)[0]: list(f.values())[0] for f in fmap["features"]}
    assert specs["C1"]["vocab_size"] == 99 and specs["C1"]["hash_function"] == "hex"
    files = h5io.split_files(directory, "train")  # day by day: each day's blocks, its last one partial
    sizes = [h5io.block_rows(f) for f in files]
    assert (
        len(files) == 23
        and max(sizes) <= 128
        and sum(sizes) == build_mod.read_info(directory)["rows"]["train"]
    )
    data = read_split(directory, "test")
    raw = [r.split("\t") for r in day_rows[23][:21]]
    want = np.array([int(r[14], 16) % 97 + 1 if r[14] else 98 for r in raw])
    np.testing.assert_array_equal(data["C1"], want)
    i1 = np.array([np.log1p(max(float(r[1]), 0)) if r[1] else 0.0 for r in raw], dtype=np.float32)
    np.testing.assert_allclose(data["I1"], i1, rtol=1e-6)


# ---- hashing in the builder ---------------------------------------------------------------------------------


def fnv_reference(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) % 2**64
    for shift, mult in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53), (33, None)):
        h ^= h >> shift
        if mult:
            h = (h * mult) % 2**64
    return h


def test_fnv1a_hash_is_the_stable_definition():
    values = ["", "a", "68fd1e64", "héllo wörld", "x" * 70]
    from benchmark.data.encode import fnv1a64

    got = fnv1a64(pl.Series(values))
    assert [int(v) for v in got] == [fnv_reference(v) for v in values]
    sliced = pl.Series(values * 3).slice(4, 6)  # offsets of a sliced arrow array
    assert [int(v) for v in fnv1a64(sliced)] == [fnv_reference(v) for v in (values * 3)[4:10]]


def test_hash_buckets_per_feature_keeps_other_ids(tmp_path):
    rows = avazu_rows(300, seed=9)
    for split, part in (
        ("train", rows[:201]),
        ("valid", rows[:1] + rows[201:251]),
        ("test", rows[:1] + rows[251:]),
    ):
        write_text(str(tmp_path / "raw" / "Avazu_x4" / f"{split}.csv"), part)
    _, plain = built("Avazu_x4_002", tmp_path / "raw", tmp_path / "plain")
    features = load_dataset_config(CONFIG, "Avazu_x4_002")["feature_cols"]
    hashed_cols = [dict(c) for c in features]
    hashed_cols[2] = dict(hashed_cols[2], name=["C1", "banner_pos", "site_id"], hash_buckets=13)
    hashed_cols.insert(
        3,
        dict(features[2], name=[n for n in features[2]["name"] if n not in ("C1", "banner_pos", "site_id")]),
    )
    _, hashed = built(
        "Avazu_x4_002", tmp_path / "raw", tmp_path / "hashed", "feature_cols=" + json.dumps(hashed_cols)
    )
    a, b = read_split(plain, "valid"), read_split(hashed, "valid")
    for col in a:
        if col not in ("C1", "banner_pos", "site_id"):
            np.testing.assert_array_equal(a[col], b[col], err_msg=col)
    raw_valid = [r.split(",") for r in rows[201:251]]
    np.testing.assert_array_equal(b["site_id"], [fnv_reference(r[5]) % 13 + 1 for r in raw_valid])
    fmap = json.load(open(os.path.join(hashed, "feature_map.json")))
    specs = {list(f)[0]: list(f.values())[0] for f in fmap["features"]}
    assert specs["site_id"]["vocab_size"] == 15 and specs["site_id"]["padding_idx"] == 0
    assert json.load(open(os.path.join(hashed, "feature_vocab.json")))["site_id"] == {
        "__PAD__": 0,
        "__OOV__": 14,
    }


def test_hash_buckets_errors(tmp_path):
    params = load_dataset_config(CONFIG, "Criteo_x1")
    for bad, match in (
        ({"hash_buckets": -3}, "must be a positive integer"),
        ({"hash_buckets": 10, "hash_function": "md5"}, "hash_function 'md5' is not one of"),
    ):
        with pytest.raises(CTRBenchError, match=match):
            build_mod.feature_specs(dict(params, **bad))
    cols = [dict(params["feature_cols"][0], hash_buckets=5)] + params["feature_cols"][1:]
    with pytest.raises(CTRBenchError, match="feature 'I1' .*categorical features only"):
        build_mod.feature_specs(dict(params, feature_cols=cols))
    assert build_mod.build_key(params) == build_mod.build_key(dict(params, hash_buckets=0))
    assert build_mod.build_key(params) != build_mod.build_key(dict(params, hash_buckets=5))


def test_model_trains_on_hashed_features(train, tmp_path):
    record = train("DNN_tiny", "hash_buckets=50", "dataset_id=tiny_cat", f"build_root={tmp_path}")
    assert np.isfinite(record["test"]["logloss"]) and 0 <= record["test"]["AUC"] <= 1


# ---- x1 layouts (BARS CSVs): CRLF, missing values, empty fields ------------------------------------------------


def test_x1_layouts_build_with_crlf_and_missing_values(tmp_path):
    rng = np.random.default_rng(11)
    for name, split_set in (("Criteo_x1", "Criteo_x1"), ("MovielensLatest_x1", "MovielensLatest_x1")):
        header = registry.SPLIT_SETS[split_set].header
        for split, n in (("train", 120), ("valid", 30), ("test", 30)):
            lines = [",".join(header)]
            for i in range(n):
                vals = [str(int(rng.random() < 0.3))]
                for col in header[1:]:
                    if col.startswith("I"):
                        vals.append("" if rng.random() < 0.1 else f"{rng.random():.6f}")
                    else:
                        vals.append("" if rng.random() < 0.05 else str(int(rng.integers(0, 20))))
                lines.append(",".join(vals))
            write_text(str(tmp_path / "raw" / name / f"{split}.csv"), lines, crlf=True)
        params, directory = built(name, tmp_path / "raw", tmp_path / "built", "min_categr_count=1")
        data = read_split(directory, "train")
        assert set(data) == set(header) and len(data["label"]) == 120
        if name == "Criteo_x1":
            assert np.isfinite(data["I1"]).all() and (data["I1"] == 0).any()  # empty -> fill_na 0


def test_real_avazu_x1_sample_builds_and_is_not_the_full_split(tmp_path):
    sample = os.path.join(SHARED_DATA, "Avazu_x1_tiny")
    if not os.path.isdir(sample):
        pytest.skip("../shared/data/Avazu_x1_tiny is not here")
    os.makedirs(tmp_path / "root")
    os.symlink(sample, tmp_path / "root" / "Avazu_x1")
    params, directory = built("Avazu_x1", tmp_path / "root", tmp_path / "built")
    assert build_mod.read_info(directory)["rows"] == {"train": 70, "valid": 10, "test": 20}
    assert json.load(open(os.path.join(directory, "feature_map.json")))["num_fields"] == 22
    split_set, located = downloads_mod.locate(
        "Avazu_x1", {s: params[f"{s}_data"] for s in h5io.SPLITS}, params["data_root"]
    )
    checks = downloads_mod.verify(split_set, located)
    assert [c.status for c in checks] == ["mismatch"] * 3
    assert "70 rows instead of 28,300,276" in checks[0].message


# ---- verify: real Frappe files, a corrupted copy, the CLI -----------------------------------------------------

needs_frappe = pytest.mark.skipif(not frappe_available(), reason="../shared/data/Frappe_x1 is not here")


@needs_frappe
def test_afn_and_nfm_sources_convert_to_the_bars_files(tmp_path):
    for source in ("source_afn", "source_nfm"):
        result = prep.prepare(
            "Frappe_x1", os.path.join(SHARED_DATA, "Frappe_x1", source), str(tmp_path / source)
        )
        assert [(c.split, c.status) for c in result.checks] == [("valid", "ok"), ("test", "ok")]
        assert md5(tmp_path / source / "Frappe_x1" / "test.csv") == "3470f6d32713dc5f7715f198ca7c612a"


@needs_frappe
def test_verify_real_frappe_and_corrupted_copies(tmp_path):
    cache = str(tmp_path / "cli-cache")
    res = ctrbench("data", "verify", "Frappe_x1", "--data-root", SHARED_DATA, env_cache=cache)
    assert res.returncode == 0, res.stderr
    assert "2 of 3 files verified; missing: train" in " ".join(res.stdout.split())
    res = cli("data", "list", "--data-root", SHARED_DATA, cache=cache)
    row = [l for l in res.output.splitlines() if "Frappe_x1/{train,valid,test}.csv" in l][0]
    assert "partial" in row and "yes (present files)" in row
    # a truncated download and a copy with LF line ends: both fail, exit 2, and say why
    bad = tmp_path / "bad" / "Frappe_x1"
    bad.mkdir(parents=True)
    data = open(os.path.join(SHARED_DATA, "Frappe_x1", "valid.csv"), "rb").read()
    (bad / "valid.csv").write_bytes(data[: len(data) // 3])
    (bad / "test.csv").write_bytes(
        open(os.path.join(SHARED_DATA, "Frappe_x1", "test.csv"), "rb").read().replace(b"\r\n", b"\n")
    )
    res = ctrbench("data", "verify", "Frappe_x1", "--data-root", str(tmp_path / "bad"), env_cache=cache)
    assert res.returncode == 2
    assert "error: Frappe_x1: valid (mismatch), test (mismatch) do not match" in " ".join(res.stderr.split())
    split_set, located = downloads_mod.locate("Frappe_x1", {}, str(tmp_path / "bad"))
    checks = downloads_mod.verify(split_set, located)
    assert [c.status for c in checks] == ["missing", "mismatch", "mismatch"]
    assert "rows instead of 57,722 (truncated download?)" in checks[1].message and checks[1].rows < 20_000
    assert "line ends must stay CRLF" in checks[2].message
    res = cli("data", "list", "--data-root", str(tmp_path / "bad"), cache=cache)
    assert "MISMATCH" in [l for l in res.output.splitlines() if "Frappe_x1/{train" in l][0]


def test_verify_missing_files_and_bad_header(tmp_path):
    res = cli(
        "data", "verify", "KKBox_x1", "--data-root", str(tmp_path / "nothing"), cache=str(tmp_path / "c")
    )
    assert isinstance(res.exception, CTRBenchError)
    assert "missing; download from https://huggingface.co/datasets/reczoo/KKBox_x1" in str(res.exception)
    res = cli("data", "verify", "KKBox_x1", "--sources", cache=str(tmp_path / "c"))
    assert res.exit_code == 0 and "kkbox-music-recommendation-challenge" in res.output
    folder = tmp_path / "root" / "ML_1M"
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("label,UserID,MovieID\n1,2,3\n")
    split_set, located = downloads_mod.locate("ML_1M", {}, str(tmp_path / "root"))
    checks = downloads_mod.verify(split_set, located)
    assert checks[0].status == "bad-header" and "missing Rating" in checks[0].message
    assert downloads_mod.locate("tiny", {"train": "/x/raw/tiny/train.csv"}, "") == (None, {})
    res = cli("data", "verify", "tiny", cache=str(tmp_path / "c"))
    assert "no published files are known for 'tiny'" in str(res.exception)


def test_cli_prepare_and_list(tmp_path):
    write_text(str(tmp_path / "raw" / "train.txt"), criteo_rows(30, seed=12))
    cache = str(tmp_path / "c")
    res = cli(
        "data",
        "prepare",
        "Criteo_x4_ibnet",
        "--from",
        str(tmp_path / "raw" / "train.txt"),
        "--out",
        str(tmp_path / "data"),
        cache=cache,
    )
    assert res.exit_code == 0, res.output
    assert "raw source: https://ailab.criteo.com/ressources/" in res.output and "differs: md5" in res.output
    res = cli("data", "list", "--data-root", str(tmp_path / "data"), cache=cache)
    assert res.exit_code == 0, res.output
    row = [l for l in res.output.splitlines() if l.startswith("│ Criteo_x4_ibnet")][0]
    assert "│ yes" in row and "MISMATCH" in row
    for dataset_id in registry.DATASETS:
        assert f"│ {dataset_id} " in res.output
    res = cli("data", "prepare", "Criteo_x1", "--from", str(tmp_path), cache=cache)
    assert "has no raw recipe" in str(res.exception)


@pytest.mark.parametrize("dataset_id", sorted(registry.DATASETS) + ["Frappe_x1_tf4ctr", "KKBox_x1_tf4ctr"])
def test_default_configs_build_apart_from_the_raw_files(dataset_id, tmp_path):
    """With the shipped configs a run on absent data names the missing files (and where to get them),
    and a rebuild could never replace the folder holding the raw files."""
    params = load_dataset_config(CONFIG, dataset_id, str(tmp_path / "raw"))
    target = os.path.abspath(build_mod.data_dir(params))
    for path in build_mod.raw_paths(params).values():
        if path:
            assert not os.path.abspath(path).startswith(target + os.sep), (path, target)
    params["build_root"] = str(tmp_path / "built")  # (the repository's own data/built may hold real builds)
    with pytest.raises(CTRBenchError, match="is missing .*(get it from|download it)") as err:
        build_mod.build(params, quiet=True)
    assert str(tmp_path / "raw") in err.value.message and not os.path.exists(build_mod.data_dir(params))


@pytest.mark.parametrize(
    "days, train_days, eval_day",
    [([5], [5], None), ([0, 7], [0], 7), ([3, 9, 23], [3, 9], 23)],
    ids=["one-day", "two-days-no-day-23", "with-day-23"],
)
def test_prepare_terabyte_with_a_subset_of_days(tmp_path, caplog, days, train_days, eval_day):
    """Criteo Terabyte as users have it: any subset of days prepares, the split rule is logged, and the
    result builds."""
    import logging

    src = tmp_path / "tb"
    rows = {d: criteo_rows(200 if len(days) == 1 else 40, seed=200 + d) for d in days}
    for d in days:
        write_text(str(src / f"day_{d}"), rows[d])
    with caplog.at_level(logging.INFO, logger="ctrbench"):
        prep.prepare("Criteo_Terabyte", str(src), str(tmp_path / "data"))
    assert f"({len(days)} of 24 days present)" in caplog.text
    out = tmp_path / "data" / "Criteo_Terabyte"
    assert sorted(os.listdir(out / "train")) == [f"day_{d:02d}.csv" for d in train_days]
    test = open(out / "test.csv").read().splitlines()[1:]
    valid = open(out / "valid.csv").read().splitlines()[1:]
    train = [
        line for d in train_days for line in open(out / "train" / f"day_{d:02d}.csv").read().splitlines()[1:]
    ]
    converted = {d: [r.replace("\t", ",") for r in rows[d]] for d in days}
    if eval_day is None:  # one day: first 90% train, the last 10% halved into test and valid, in order
        assert train + test + valid == converted[days[0]]
        assert (len(train), len(test), len(valid)) == (180, 10, 10)
        assert "its last 10% held out in order" in caplog.text
    else:
        assert train == [line for d in train_days for line in converted[d]]
        assert test + valid == converted[eval_day] and len(test) == 20
        assert f"day {eval_day} (the" in caplog.text
    params, directory = built(
        "Criteo_Terabyte", tmp_path / "data", tmp_path / "built", "hash_buckets=97", "build_in_memory=false"
    )
    assert build_mod.read_info(directory)["rows"] == {
        "train": len(train),
        "valid": len(valid),
        "test": len(test),
    }
