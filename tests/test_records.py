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
