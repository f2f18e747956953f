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
    records = [json.loads(line) for line in lines]           # every line is whole JSON
    assert sorted((r["worker"], r["i"]) for r in records) == [(w, i) for w in range(3) for i in range(40)]


def test_read_records_skips_broken_lines(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"a": 1}\n{"broken\n\n{"a": 2}\n')
    assert read_records(str(path)) == [{"a": 1}, {"a": 2}]
