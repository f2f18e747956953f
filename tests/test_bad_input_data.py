"""Bad data, table-driven: damaged builds (issue 14.5) and raw-file content errors (14.6).

Each error case is one ``ctrbench data build`` (or ``data verify-build``) that must end with exit code 2
and exactly one ``error:`` line naming the file, line, column or value and the fix, without a
traceback, and leave the earlier build of another dataset byte for byte as it was. Each repair case
damages a finished build the way a disk, a user or a killed process would; the next build must notice
(sizes always, checksums when the build is small), say what it found and rebuild.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from tests.test_bad_input import ctrbench, snapshot

ROWS = 400


def _frame(n: int, seed: int, labels=None) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "label": rng.integers(0, 2, n) if labels is None else labels,
            "num": rng.random(n).round(4),
            "cat": rng.choice(["a", "b", "c", "d"], n),
            "seq": ["^".join(rng.choice(["x", "y", "z"], rng.integers(1, 4))) for _ in range(n)],
        }
    )


DATASET = """
{name}:
  data_root: ../raw/
  build_root: ../built/
  train_data: {name}/train.csv
  valid_data: {name}/valid.csv
  test_data: {name}/test.csv
  min_categr_count: 1
  feature_cols:
    - {{name: num, active: True, dtype: float, type: numeric, normalizer: StandardScaler}}
    - {{name: cat, active: True, dtype: str, type: categorical}}
    - {{name: seq, active: True, dtype: str, type: sequence, splitter: "^", max_len: 3}}
  label_col: {{name: label, dtype: float}}
"""


def write_raw(ws: str, name: str) -> None:
    folder = os.path.join(ws, "raw", name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for i, (split, n) in enumerate((("train", ROWS), ("valid", ROWS // 4), ("test", ROWS // 4))):
        _frame(n, i).write_csv(os.path.join(folder, f"{split}.csv"))


@pytest.fixture
def ws(tmp_path):
    """A workspace with two datasets: ``good`` (built before every case, must stay untouched) and
    ``bad`` (raw files the case damages)."""
    from benchmark.config import load_dataset_config
    from benchmark.data.build import build

    ws = str(tmp_path)
    os.makedirs(os.path.join(ws, "config", "dataset_config"))
    os.makedirs(os.path.join(ws, "config", "model_config"))
    with open(os.path.join(ws, "config", "dataset_config", "d.yaml"), "w") as fd:
        fd.write(DATASET.format(name="good") + DATASET.format(name="bad"))
    with open(os.path.join(ws, "config", "model_config", "m.yaml"), "w") as fd:
        fd.write("E: {model: LR, dataset_id: bad}\n")
    for name in ("good", "bad"):
        write_raw(ws, name)
    build(load_dataset_config(os.path.join(ws, "config"), "good"), quiet=True)
    return ws


def build_args(dataset: str = "bad", *sets: str) -> list[str]:
    args = ["data", "build", dataset, "--config", "{ws}/config"]
    for s in sets:
        args += [s] if s.startswith("--") else ["--set", s]
    return args


def _csv(ws, split="train"):
    return os.path.join(ws, "raw", "bad", f"{split}.csv")


def _append_line(split: str, line: str):
    def setup(ws):
        with open(_csv(ws, split), "a") as fd:
            fd.write(line + "\n")

    return setup


def _rewrite(split: str, frame_fn):
    def setup(ws):
        frame_fn().write_csv(_csv(ws, split))

    return setup


def _header_only(split):
    def setup(ws):
        with open(_csv(ws, split), "w") as fd:
            fd.write("label,num,cat,seq\n")

    return setup


def _gzip_named_csv(ws):
    with open(_csv(ws), "rb") as fd:
        data = fd.read()
    with open(_csv(ws), "wb") as fd:
        fd.write(gzip.compress(data))


def _directory_as_file(ws):
    os.remove(_csv(ws, "valid"))
    os.makedirs(_csv(ws, "valid"))


def _bad_utf8_late(ws):
    """A latin-1 byte far below the first block polars reads."""
    frame = _frame(5000, 7)
    frame.write_csv(_csv(ws))
    with open(_csv(ws), "ab") as fd:
        fd.write(b"1,0.5,caf\xe9,x\n")


def _no_fill_na(line: str):
    """``num`` declared with ``fill_na: null`` (no fill value applies), then ``line`` appended to train."""

    def setup(ws):
        path = os.path.join(ws, "config", "dataset_config", "d.yaml")
        with open(path) as fd:
            text = fd.read()
        good, bad = text.split("\nbad:")
        bad = bad.replace("normalizer: StandardScaler}", "normalizer: StandardScaler, fill_na: null}")
        with open(path, "w") as fd:
            fd.write(good + "\nbad:" + bad)
        _append_line("train", line)(ws)

    return setup


def _edit_bad(old: str, new: str, then=None):
    """Change ``old`` to ``new`` in the ``bad`` section of the dataset config (then run ``then(ws)``)."""

    def setup(ws):
        path = os.path.join(ws, "config", "dataset_config", "d.yaml")
        with open(path) as fd:
            good, bad = fd.read().split("\nbad:")
        with open(path, "w") as fd:
            fd.write(good + "\nbad:" + bad.replace(old, new))
        if then:
            then(ws)

    return setup


def _data_root_file(ws):
    with open(os.path.join(ws, "afile"), "w") as fd:
        fd.write("not a folder\n")


def _data_root_loop(ws):
    os.symlink(os.path.join(ws, "loop"), os.path.join(ws, "loop"))


def _empty_cat(*splits):
    def setup(ws):
        for i, split in enumerate(splits):
            _frame(ROWS, i).with_columns(pl.lit("").alias("cat")).write_csv(_csv(ws, split))

    return setup


def _bad_byte_line_3(ws):
    frame = _frame(ROWS, 0)
    frame.write_csv(_csv(ws))
    with open(_csv(ws), "rb") as fd:
        lines = fd.read().split(b"\n")
    lines[2] = (
        lines[2].replace(b",a,", b",caf\xe9,").replace(b",b,", b",caf\xe9,").replace(b",c,", b",caf\xe9,")
    )
    lines[2] = lines[2].replace(b",d,", b",caf\xe9,")
    with open(_csv(ws), "wb") as fd:
        fd.write(b"\n".join(lines))


ERRORS = [
    # (id, setup, extra --set, substrings of the error line)
    (
        "empty-label",
        _append_line("train", ",0.5,a,x"),
        [],
        ["train.csv line 402", "label column 'label'", "empty (or NaN) value", "fix or drop that row"],
    ),
    ("nan-label", _append_line("train", "NaN,0.5,a,x"), [], ["train.csv line 402", "empty (or NaN) value"]),
    (
        "label-2",
        _append_line("valid", "2,0.5,a,x"),
        [],
        ["valid.csv line 102", "has value 2, not 0 or 1", "binarise the label"],
    ),
    ("label-minus-1", _append_line("test", "-1,0.5,a,x"), [], ["test.csv line 102", "has value -1"]),
    (
        "label-yes",
        _append_line("train", "yes,0.5,a,x"),
        [],
        ["train.csv: line 402, column 'label'", "'yes'", "not a number"],
    ),
    (
        "text-in-numeric",
        _append_line("valid", "1,abc,a,x"),
        [],
        ["valid.csv: line 102, column 'num'", "'abc'", "declare the column dtype: str"],
    ),
    (
        "non-utf8-after-first-block",
        _bad_utf8_late,
        ["build_in_memory=false"],
        ["train.csv: line 5002 is not valid UTF-8", "iconv"],
    ),
    (
        "non-utf8-in-memory",
        _bad_utf8_late,
        ["build_in_memory=true"],
        ["train.csv: line 5002 is not valid UTF-8"],
    ),
    (
        "inf-in-numeric",
        _append_line("train", "1,inf,a,x"),
        [],
        ["train.csv: line 402, column 'num'", "holds inf", "not a finite number", "fix or drop that row"],
    ),
    (
        "minus-inf-in-numeric-valid",
        _append_line("valid", "0,-inf,a,x"),
        [],
        ["valid.csv: line 102, column 'num'", "holds -inf"],
    ),
    (
        "inf-in-numeric-streamed",
        _append_line("test", "0,+inf,a,x"),
        ["build_in_memory=false"],
        ["test.csv: line 102, column 'num'", "holds inf"],
    ),
    (
        "nan-without-fill-na",
        _no_fill_na("1,NaN,a,x"),
        [],
        ["train.csv: line 402, column 'num'", "an empty or NaN value", "fill_na"],
    ),
    (
        "empty-without-fill-na",
        _no_fill_na("1,,a,x"),
        ["build_in_memory=false"],
        ["train.csv: line 402, column 'num'", "an empty or NaN value"],
    ),
    (
        "field-too-many",
        _append_line("train", "1,0.5,a,x,extra"),
        [],
        ["train.csv: line 402 has 5 fields, the header has 4", "a field too many", "fix or drop that line"],
    ),
    (
        "field-too-few",
        _append_line("valid", "1,0.5,a"),
        [],
        ["valid.csv: line 102 has 3 fields, the header has 4", "a field too few"],
    ),
    (
        "parquet-format-on-csv",
        None,
        ["data_format=parquet"],
        ["train.csv is not a parquet file", "data_format: parquet", "set data_format: csv"],
    ),
    (
        "parquet-file-named-csv",
        lambda ws: _frame(ROWS, 0).write_parquet(_csv(ws)),
        [],
        ["train.csv is a parquet file, not csv", "set data_format: parquet"],
    ),
    (
        "data-root-is-a-file",
        _edit_bad("data_root: ../raw/", "data_root: ../afile/", _data_root_file),
        [],
        ["afile is a file, not a folder", "point data_root (--data-root"],
    ),
    (
        "data-root-symlink-loop",
        _edit_bad("data_root: ../raw/", "data_root: ../loop/", _data_root_loop),
        [],
        ["loop is a symbolic link that loops", "point data_root"],
    ),
    (
        "empty-categorical-train-only",
        _empty_cat("train"),
        [],
        ["categorical column 'cat' is empty in every row of the train split", "train.csv", "active: False"],
    ),
    (
        "empty-categorical-everywhere",
        _empty_cat("train", "valid", "test"),
        ["build_in_memory=false"],
        ["categorical column 'cat' is empty in every row of the train split"],
    ),
    ("bad-byte-at-line-3", _bad_byte_line_3, [], ["train.csv: line 3 is not valid UTF-8", "iconv"]),
    ("jobs-negative", None, ["--jobs=-3"], ["--jobs -3", "files built at once"]),
    ("header-only-valid", _header_only("valid"), [], ["valid.csv has no rows", "the valid split"]),
    ("header-only-train", _header_only("train"), [], ["train.csv has no rows"]),
    (
        "one-row-valid",
        _rewrite("valid", lambda: _frame(1, 3)),
        [],
        ["the valid split", "has 1 row(s), all with label =", "AUC needs rows of both classes"],
    ),
    (
        "single-class-test",
        _rewrite("test", lambda: _frame(50, 3, labels=[1] * 50)),
        [],
        ["the test split", "has 50 row(s), all with label = 1", "AUC needs rows of both classes"],
    ),
    ("gzip-named-csv", _gzip_named_csv, [], ["train.csv is gzip-compressed", "gunzip -k train.csv"]),
    (
        "directory-as-valid",
        _directory_as_file,
        [],
        ["valid_data", "valid.csv is a directory with no *.csv files"],
    ),
    ("empty-file", lambda ws: open(_csv(ws), "w").close(), [], ["train.csv is empty"]),
    ("build-jobs-zero-point-five", None, ["build_jobs=0.5"], ["build_jobs=0.5", "positive integer"]),
    (
        "set-key-nobody-reads",
        None,
        ["min_categr_cont=2"],
        ["unknown key 'min_categr_cont' (--set min_categr_cont)", "did you mean 'min_categr_count'"],
    ),
]


def _check_error(ws, capsys, args, expect):
    before = snapshot(os.path.join(ws, "built", "good"))
    code, out, err = ctrbench([a.replace("{ws}", ws) for a in args], ws, capsys)
    lines = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in out + err
    for part in expect:
        assert part in lines[0], (part, lines[0])
    assert snapshot(os.path.join(ws, "built", "good")) == before
    assert not [n for n in os.listdir(os.path.join(ws, "built")) if ".building-" in n]


@pytest.mark.parametrize("case_id, setup, sets, expect", ERRORS, ids=[c[0] for c in ERRORS])
def test_bad_data_is_one_error_line(ws, capsys, case_id, setup, sets, expect):
    if setup:
        setup(ws)
    _check_error(ws, capsys, build_args("bad", *sets), expect)


@pytest.mark.parametrize("case_id, setup, sets, expect", ERRORS[:4], ids=[c[0] for c in ERRORS[:4]])
def test_a_failed_rebuild_keeps_the_earlier_build(ws, capsys, case_id, setup, sets, expect):
    """The same errors on a dataset that was built before: the earlier build stays as it was."""
    assert ctrbench([a.replace("{ws}", ws) for a in build_args("bad")], ws, capsys)[0] == 0
    before = snapshot(os.path.join(ws, "built", "bad"))
    setup(ws)
    _check_error(ws, capsys, build_args("bad", *sets), expect)
    assert snapshot(os.path.join(ws, "built", "bad")) == before


# ---- damaged builds: noticed on reuse, named, rebuilt ------------------------------------------------


def _truncate(rel):
    def damage(directory):
        path = os.path.join(directory, rel)
        with open(path, "r+b") as fd:
            fd.truncate(os.path.getsize(path) // 2)
        return path

    return damage


def _flip_byte(rel):
    def damage(directory):
        path = os.path.join(directory, rel)
        with open(path, "r+b") as fd:
            fd.seek(os.path.getsize(path) - 10)
            byte = fd.read(1)
            fd.seek(-1, 1)
            fd.write(bytes([byte[0] ^ 0xFF]))
        return path

    return damage


def _delete(rel):
    def damage(directory):
        os.remove(os.path.join(directory, rel))
        return os.path.join(directory, rel)

    return damage


REPAIRS = [
    # (id, damage, what the warning says)
    ("truncated-train-h5", _truncate("train.h5"), "not {size} (truncated or overwritten)"),
    ("same-size-other-contents", _flip_byte("valid.h5"), "has changed contents (checksum differs)"),
    ("deleted-test-h5", _delete("test.h5"), "test.h5 is missing"),
    ("deleted-feature-map", _delete("feature_map.json"), "feature_map.json is missing"),
    ("deleted-build-info", _delete("build_info.json"), "its build_info.json is missing"),
    ("truncated-vocab", _truncate("feature_vocab.json"), "truncated or overwritten"),
]


@pytest.mark.parametrize("case_id, damage, says", REPAIRS, ids=[c[0] for c in REPAIRS])
def test_damaged_build_is_named_and_rebuilt(ws, caplog, capsys, case_id, damage, says):
    from benchmark.config import load_dataset_config
    from benchmark.data import h5io
    from benchmark.data.build import build, read_info

    params = load_dataset_config(os.path.join(ws, "config"), "bad")
    directory = build(params, quiet=True)
    good = snapshot(directory)
    size = read_info(directory)["files"].get("train.h5", {}).get("size")
    damage(directory)
    with caplog.at_level("WARNING", logger="ctrbench"):
        again = build(params, quiet=True)
    message = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "Rebuilding" in message and says.format(size=f"{size:,}") in message, message
    assert again == directory
    rebuilt = snapshot(directory)
    assert set(rebuilt) == set(good) and rebuilt["train.h5"] == good["train.h5"]
    assert h5io.block_rows(h5io.split_files(directory, "test")[0]) == ROWS // 4


def test_verify_build_names_the_damaged_file(ws, capsys):
    from benchmark.config import load_dataset_config
    from benchmark.data.build import build

    directory = build(load_dataset_config(os.path.join(ws, "config"), "bad"), quiet=True)
    code, out, _ = ctrbench(["data", "verify-build", "bad", "--config", f"{ws}/config"], ws, capsys)
    assert code == 0 and "every file matches" in out
    _flip_byte("train.h5")(directory)
    _check_error(
        ws,
        capsys,
        ["data", "verify-build", "bad", "--config", "{ws}/config"],
        ["is damaged", "train.h5 has changed contents", "ctrbench data build bad --force"],
    )


def test_large_build_checks_sizes_on_reuse_and_checksums_on_verify(ws, monkeypatch, caplog):
    """Past VERIFY_ON_REUSE_BYTES a reuse compares sizes only (cheap); verify-build still reads every byte."""
    from benchmark.config import load_dataset_config
    from benchmark.data import build as build_mod

    params = load_dataset_config(os.path.join(ws, "config"), "bad")
    directory = build_mod.build(params, quiet=True)
    monkeypatch.setattr(build_mod, "VERIFY_ON_REUSE_BYTES", 0)
    _flip_byte("valid.h5")(directory)
    with caplog.at_level("WARNING", logger="ctrbench"):
        build_mod.build(params, quiet=True)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert build_mod.verify_build(params)[1] == [
        f"{directory}/valid.h5 has changed contents (checksum differs)"
    ]


def test_damaged_legacy_h5_is_one_error_line(ws, capsys):
    """A fuxictr-2.0 directory (no build of ctrbench's own) is used as it is: a truncated h5 in it is named."""
    from benchmark.config import load_dataset_config
    from benchmark.data.build import INFO_FILE, MARKER_FILE, build

    directory = build(load_dataset_config(os.path.join(ws, "config"), "bad"), quiet=True)
    for name in (INFO_FILE, MARKER_FILE):
        os.remove(os.path.join(directory, name))
    _truncate("train.h5")(directory)
    from benchmark.data import h5io
    from benchmark.errors import CTRBenchError

    with pytest.raises(CTRBenchError, match=r"train.h5 is not a readable h5 file .* damaged or truncated"):
        h5io.block_rows(os.path.join(directory, "train.h5"))


def test_leftovers_of_killed_builds_are_removed(ws):
    from benchmark.config import load_dataset_config
    from benchmark.data.build import build

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    built = os.path.join(ws, "built")
    stale = [os.path.join(built, f".bad.building-{dead.pid}"), os.path.join(built, f"bad.old-{dead.pid}")]
    for path in stale:
        os.makedirs(os.path.join(path, "train"))
    build(load_dataset_config(os.path.join(ws, "config"), "bad"), quiet=True)
    assert not any(os.path.exists(p) for p in stale)


def test_a_running_build_keeps_its_folder(ws):
    from benchmark.data.build import remove_stale_builds

    running = os.path.join(ws, "built", f".bad.building-{os.getpid()}")
    os.makedirs(running)
    assert remove_stale_builds(os.path.join(ws, "built"), "bad") == [] and os.path.isdir(running)


def test_build_info_records_every_file(ws):
    from benchmark.config import load_dataset_config
    from benchmark.data.build import build

    directory = build(load_dataset_config(os.path.join(ws, "config"), "bad"), quiet=True)
    with open(os.path.join(directory, "build_info.json")) as fd:
        files = json.load(fd)["files"]
    assert {"train.h5", "valid.h5", "test.h5", "feature_map.json", "feature_vocab.json"} <= set(files)
    assert all(f["size"] == os.path.getsize(os.path.join(directory, rel)) for rel, f in files.items())


# ---- the disk fills up during a build (table-driven: first build or rebuild, in memory or streamed) --------


@pytest.mark.parametrize(
    "rebuild, sets, expect_file",
    [
        (False, ["build_in_memory=true"], "valid.h5"),
        (False, ["build_in_memory=false", "data_block_size=50"], "part_00001.h5"),
        (True, ["build_in_memory=true"], "valid.h5"),
        (True, ["build_in_memory=false"], "valid.h5"),
    ],
    ids=["first-build", "first-build-streamed-blocks", "rebuild", "rebuild-streamed"],
)
def test_disk_full_is_one_line_and_keeps_earlier_builds(ws, capsys, monkeypatch, rebuild, sets, expect_file):
    """ENOSPC while a block is written: one line naming the file and the free space, the partial build
    removed, the earlier builds (another dataset's, and this one's before a rebuild) unchanged."""
    import errno

    from benchmark.data import blocks, h5io

    if rebuild:
        assert ctrbench([a.replace("{ws}", ws) for a in build_args("bad")], ws, capsys)[0] == 0
        _append_line("train", "1,0.5,a,x")(ws)  # a changed raw file: the next build rebuilds
    earlier = snapshot(os.path.join(ws, "built", "bad")) if rebuild else None
    calls = {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:  # the first block is written, the second finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    if "build_in_memory=true" in sets:
        original = h5io.write_block
        monkeypatch.setattr(h5io, "write_block", full)
    else:
        original = blocks.H5Appender.append
        monkeypatch.setattr(blocks.H5Appender, "append", full)
    _check_error(
        ws,
        capsys,
        build_args("bad", *sets),
        ["no space left on the device while writing", expect_file, "GiB free", "--build-root"],
    )
    if rebuild:
        assert snapshot(os.path.join(ws, "built", "bad")) == earlier
    else:
        assert not os.path.exists(os.path.join(ws, "built", "bad"))


def test_synthetic_dataset_with_a_missing_split_is_regenerated(tmp_path, caplog):
    """A generated fixture whose valid split was deleted is written again from its seed (and said so),
    not reported as a download to fetch."""
    import logging

    from benchmark.config import load_dataset_config
    from benchmark.data.build import build
    from tests.conftest import CONFIG

    params = load_dataset_config(CONFIG, "tiny", str(tmp_path))
    build(params, quiet=True)
    with open(params["valid_data"], "rb") as fd:
        valid = fd.read()
    os.remove(params["valid_data"])
    with caplog.at_level(logging.INFO, logger="ctrbench"):
        build(params, quiet=True)
    assert "valid.csv is missing; regenerating synthetic dataset 'tiny' from its seed" in caplog.text
    with open(params["valid_data"], "rb") as fd:
        assert fd.read() == valid
