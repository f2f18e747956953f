import json
import multiprocessing as mp

from benchmark.records import append_record, read_records


def _writer(path, worker, n):
    for i in range(n):
        append_record(path, {"worker": worker, "i": i, "payload": "x" * 5000})


def test_concurrent_appends_never_interleave(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = open(path).read().splitlines()
    assert len(lines) == 120
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    assert sorted((r["worker"], r["i"]) for r in records) == [(w, i) for w in range(3) for i in range(40)]


def test_read_records_skips_broken_lines(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"a": 1}\n{"broken\n\n{"a": 2}\n')
    assert read_records(str(path)) == [{"a": 1}, {"a": 2}]


def test_torn_last_line_gets_a_newline_and_a_warning(tmp_path, caplog):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "tor')  # a write cut off by a full disk
    with caplog.at_level("WARNING", logger="ctrbench"):
        append_record(str(path), {"a": 3})
    assert f"{path}:2: the last line is torn" in caplog.text
    assert path.read_text().splitlines()[-1] == '{"a": 3}'  # the new record is whole, on its own line
    caplog.clear()
    with caplog.at_level("WARNING", logger="ctrbench"):
        assert read_records(str(path)) == [{"a": 1}, {"a": 3}]
    assert f"{path}:2: skipped" in caplog.text


def test_failed_append_keeps_the_record_aside(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    from benchmark import records
    from benchmark.errors import CTRBenchError

    path = tmp_path / "runs.jsonl"
    append_record(str(path), {"a": 1})
    before = path.read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        if os.fstat(fd).st_size == len(before) and os.path.samefile(f"/proc/self/fd/{fd}", path):
            real_write(fd, data[: len(data) // 2])  # half a line reaches the disk, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(records.os, "write", full_disk)
    with pytest.raises(CTRBenchError) as err:
        append_record(str(path), {"a": 2, "payload": "x" * 100})
    assert "No space left on device" in err.value.message and "kept in" in err.value.message
    side = err.value.message.split("kept in ")[1].split(":")[0]
    assert path.read_bytes() == before  # the half line is cut off again
    assert [json.loads(line) for line in open(side)] == [{"a": 2, "payload": "x" * 100}]


def test_unopenable_records_path_keeps_the_record_aside(tmp_path, monkeypatch):
    import pytest

    from benchmark.errors import CTRBenchError

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the folder next to it cannot hold it
    (tmp_path / "home").mkdir()
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be\n")
    with pytest.raises(CTRBenchError) as err:
        append_record(str(blocker / "runs.jsonl"), {"a": 1})
    assert "cannot open the run records file" in err.value.message and "kept in" in err.value.message
    side = err.value.message.split("kept in ")[1].split(":")[0]
    assert side.startswith(str(tmp_path / "home")) and json.loads(open(side).read()) == {"a": 1}
    assert blocker.read_text().startswith("a file")


# ---- grouping by what was run ----------------------------------------------------------------------


def run_rec(expid, seed, auc, time="t", dataset="d", model="DCN", test=True, **config):
    cfg = {"expid": expid, "model": model, "dataset_id": dataset, "seed": seed, "batch_size": 1024}
    cfg.update(config)
    rec = {"time": time, "expid": expid, "model": model, "dataset_id": dataset, "seed": seed, "config": cfg}
    if test:
        rec["test"] = {"AUC": auc, "logloss": 1 - auc}
    from benchmark.config import config_hash

    rec["config_hash"] = config_hash(cfg)
    return rec


def test_config_key_leaves_out_only_the_seed():
    from benchmark.records import config_key

    a, b = run_rec("DCN_tiny", 1, 0.7), run_rec("DCN_tiny", 2, 0.7)
    assert a["config_hash"] != b["config_hash"] and config_key(a) == config_key(b)
    assert config_key(run_rec("DCN_tiny", 1, 0.7, batch_size=256)) != config_key(a)


def test_group_records_cases():
    from benchmark.records import group_records

    records = [
        run_rec("DCN_tiny", 1, 0.70, "t1"),
        run_rec("DCN_tiny", 2, 0.72, "t2"),
        run_rec("DCN_tiny", 1, 0.80, "t3", batch_size=256),  # a --set run: another config
        run_rec("DCN_tiny_tuned", 1, 0.75, "t4", learning_rate=0.01),
        run_rec("DCN_tiny", 2, 0.73, "t5"),  # seed 2 again: replaces t2
        run_rec("DCN_tiny", 1, None, "t6", test=False),  # no test metrics: hides nothing
        run_rec("LR_tiny", 1, 0.60, "t7", model="LR"),
    ]
    groups = group_records(records)
    labels = {g.label: g for g in groups}
    assert sorted(labels) == [
        "DCN_tiny [batch_size=1024]",
        "DCN_tiny [batch_size=256]",
        "DCN_tiny_tuned",
        "LR",
    ]
    plain = labels["DCN_tiny [batch_size=1024]"]
    assert plain.seeds == [1, 2] and [r["time"] for r in plain.records] == ["t1", "t5"]
    assert plain.differing == {"batch_size": 1024} and len(plain.dropped) == 1 and "t5" in plain.dropped[0]
    assert [r["time"] for r in groups.incomplete] == ["t6"]
    latest = group_records(records, latest=True)
    assert sorted(g.label for g in latest) == ["DCN_tiny", "DCN_tiny_tuned", "LR"]  # one config each
    assert latest[0].records[0]["time"] == "t1" and [g.label for g in latest.left_out] == [
        "DCN_tiny [batch_size=256]"
    ]
    assert any("left out by --latest" in n for n in latest.notes())


def test_find_recorded_matches_the_full_config():
    from benchmark.records import find_recorded

    records = [run_rec("DCN_tiny", 1, 0.70, "t1"), run_rec("DCN_tiny", 1, 0.71, "t2")]
    assert find_recorded(records, records[0]["config"])["time"] == "t2"  # the newest
    assert find_recorded(records, dict(records[0]["config"], seed=2)) is None
    assert find_recorded(records, records[0]["config_hash"])["time"] == "t2"
    assert find_recorded([], records[0]["config"]) is None


def test_labels_name_only_keys_that_change_what_ran():
    from benchmark.records import group_records

    records = [
        run_rec("DCN_tiny", 1, 0.70, data_root="/a", gpu=0),
        run_rec("DCN_tiny", 1, 0.80, batch_size=256, data_root="/b", gpu=1),
    ]
    assert [g.label for g in group_records(records)] == [
        "DCN_tiny [batch_size=1024]",
        "DCN_tiny [batch_size=256]",
    ]
    same = [run_rec("DCN_tiny", 1, 0.70, data_root="/a"), run_rec("DCN_tiny", 2, 0.72, data_root="/b")]
    (group,) = group_records(same)  # where it ran is no other config
    assert group.seeds == [1, 2] and group.label == "DCN"


def test_many_records_without_metrics_are_counted_not_listed():
    from benchmark.records import group_records

    records = [run_rec("DCN_tiny", s, 0.0, test=False) for s in range(25)] + [run_rec("DCN_tiny", 1, 0.7)]
    notes = group_records(records).notes()
    assert len(notes) == 11 and notes[-1] == "15 more records without test metrics"
