"""Sweeps (expansion, ledger, interruption + restart, retries, parallel processes, Ray dispatch),
the GPU-path switches on CPU, and the plots."""

import json
import os
import re

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from benchmark import sweep as sweep_mod
from benchmark.errors import CTRBenchError
from benchmark.records import append_record, read_records
from tests.conftest import CONFIG


def _specs(data_root, expids, seeds, *sets):
    return sweep_mod.resolve(sweep_mod.expand_expids(CONFIG, expids, seeds, ["verbose=0", *sets], data_root))


def _quiet(console_file):
    from rich.console import Console

    return Console(file=console_file, width=160, force_terminal=False)


# ---- the done-criterion: 3 models x 3 seeds, interrupted mid-run, restarted ---------------------------


def test_sweep_interrupted_then_restarted_runs_only_what_is_missing(data_root, tmp_path, monkeypatch):
    from benchmark import train

    results = str(tmp_path / "runs.jsonl")
    sets = [f"model_root={tmp_path}/ck", "checkpoint_steps=1"]
    specs = _specs(data_root, "LR_tiny,DNN_tiny,DCN_tiny", 3, *sets)
    assert len(specs) == 9 and len({s.config_hash for s in specs}) == 9
    assert sorted({s.seed for s in specs}) == [2023, 2024, 2025]
    ex = sweep_mod.InProcessExecutor(results, str(tmp_path / "progress"), str(tmp_path / "logs"))

    # Ctrl-C arrives in the middle of the 5th run (its 4th optimiser step)
    step, calls = train.Trainer.train_step, {"n": 0}
    steps_per_run = 7  # 1600 train rows / batch 256, 1 epoch

    def interrupting(self, batch, weight=1.0):
        calls["n"] += 1
        if calls["n"] == 4 * steps_per_run + 4:
            raise KeyboardInterrupt
        return step(self, batch, weight)

    monkeypatch.setattr(train.Trainer, "train_step", interrupting)
    log = open(tmp_path / "console.txt", "w")
    first = sweep_mod.Sweep(specs, results, ex, retries=0, console=_quiet(log), live=False)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    done_first = {r["config_hash"] for r in read_records(results)}
    assert len(done_first) == 4
    interrupted = [e for e in first.entries if e.status == "queued" and e.attempts == 1]
    assert len(interrupted) == 1
    state = tmp_path / "ck" / "tiny" / f"{interrupted[0].spec.run_id}.resume.pt"
    assert state.exists()  # its mid-epoch state survived

    monkeypatch.setattr(train.Trainer, "train_step", step)
    again = sweep_mod.resolve(
        sweep_mod.expand_expids(CONFIG, "LR_tiny,DNN_tiny,DCN_tiny", 3, ["verbose=0", *sets], data_root)
    )
    second = sweep_mod.Sweep(again, results, ex, retries=0, console=_quiet(log), live=False).run()
    assert len(second.skipped) == 4 and len(second.ran) == 5 and second.ok
    records = read_records(results)
    assert len(records) == 9 and {r["config_hash"] for r in records} == {s.config_hash for s in specs}
    resumed = [r for r in records if r["config_hash"] == interrupted[0].spec.config_hash]
    assert resumed[0]["resumed"] == 1  # continued, not restarted
    assert not state.exists()
    events = [
        e["status"]
        for e in sweep_mod.Ledger(os.path.join(sweep_mod.sweep_dir(results), "ledger.jsonl")).events()
    ]
    assert events.count("interrupted") == 1 and events.count("done") == 9
    # a third invocation has nothing to do
    third = sweep_mod.Sweep(again, results, ex, console=_quiet(log), live=False).run()
    assert third.ran == [] and len(third.skipped) == 9


# ---- ledger logic with a fake executor -------------------------------------------------------------


class FakeExecutor:
    """Appends a synthetic record per run; fails the runs named in ``fail`` (a count each)."""

    slots = 2
    appends_records = True

    def __init__(self, results, fail=None):
        self.results, self.fail, self.started, self._live = results, dict(fail or {}), [], []

    def start(self, spec, slot):
        self.started.append((spec.label, slot))
        self._live.append(spec)

    def poll(self):
        done = []
        for spec in self._live:
            if self.fail.get(spec.label, 0) > 0:
                self.fail[spec.label] -= 1
                done.append(sweep_mod.Outcome(spec, False, "boom"))
            else:
                append_record(self.results, {"config_hash": spec.config_hash, "test": {"AUC": 0.7}})
                done.append(sweep_mod.Outcome(spec, True))
        self._live = []
        return done

    def running(self):
        return len(self._live)

    def cancel(self):
        self._live = []


def test_failed_runs_are_retried_and_requeued_by_the_next_invocation(data_root, tmp_path):
    results = str(tmp_path / "runs.jsonl")
    specs = _specs(data_root, "LR_tiny", 3)
    labels = [s.label for s in specs]
    log = open(tmp_path / "console.txt", "w")
    ex = FakeExecutor(results, fail={labels[0]: 1, labels[1]: 5})
    res = sweep_mod.Sweep(specs, results, ex, retries=1, console=_quiet(log), live=False).run()
    assert labels[0] in res.ran  # failed once, retried, done
    assert [l for l, _ in res.failed] == [labels[1]]  # failed twice: given up for now
    assert {slot for _, slot in ex.started} == {0, 1}
    ex = FakeExecutor(results)
    res = sweep_mod.Sweep(specs, results, ex, retries=0, console=_quiet(log), live=False).run()
    assert res.ran == [labels[1]] and len(res.skipped) == 2
    # a run that exits cleanly without writing its record counts as failed
    ex = FakeExecutor(results)

    def no_record():
        done, ex._live = [sweep_mod.Outcome(s, True) for s in ex._live], []
        return done

    ex.poll = no_record
    lost = _specs(data_root, "LR_tiny", [7])
    res = sweep_mod.Sweep(lost, results, ex, retries=0, console=_quiet(log), live=False).run()
    assert res.failed and "without a record" in res.failed[0][1]


def test_live_table_shows_progress_of_running_runs(data_root, tmp_path):
    from rich.console import Console

    results = str(tmp_path / "runs.jsonl")
    specs = _specs(data_root, "DCN_tiny", 2)
    sw = sweep_mod.Sweep(
        specs, results, FakeExecutor(results), console=_quiet(open(os.devnull, "w")), live=False
    )
    os.makedirs(sw.progress_dir, exist_ok=True)
    sw.entries[0].status, sw.entries[0].slot, sw.entries[0].started = "running", 1, 0.0
    with open(os.path.join(sw.progress_dir, f"{specs[0].run_id}.json"), "w") as fd:
        json.dump(
            {
                "epoch": 3,
                "epochs": 10,
                "fraction": 0.25,
                "valid": {"AUC": 0.8123},
                "best": 0.8130,
                "samples_per_second": 12345,
                "eta": 95,
            },
            fd,
        )
    console = Console(record=True, width=200)
    console.print(sw.table())
    text = console.export_text()
    assert "val AUC" in text and "3/10" in text and "0.8123" in text and "0.8130" in text
    assert "12,345" in text and "1:35" in text and "25%" in text and "1 running, 1 queued" in text


# ---- tuner files -----------------------------------------------------------------------------------


def _tuner(tmp_path, space, **extra):
    doc = {
        "base_config": CONFIG,
        "base_expid": "DCN_tiny",
        "dataset_id": "tiny",
        "tuner_space": space,
        **extra,
    }
    path = tmp_path / "DCN_tiny_tuner.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_tuner_file_expands_to_stable_fuxictr_style_expids(data_root, tmp_path):
    from benchmark.config import load_config

    space = {
        "embedding_dim": [4, 8],
        "dnn_hidden_units": [[16], [32, 16]],
        "min_categr_count": [1, 2],
        "learning_rate": 1.0e-3,
        "seed": [7],
    }
    path = _tuner(tmp_path, space)
    out_dir, specs = sweep_mod.expand_tuner(path, None, None, data_root)
    assert out_dir == str(tmp_path / "DCN_tiny_tuner") and len(specs) == 8
    assert all(re.fullmatch(r"DCN_tiny_\d{3}_[0-9a-f]{8}", s.expid) for s in specs)
    assert [s.expid[9:12] for s in specs] == [f"{i:03d}" for i in range(1, 9)]
    _, again = sweep_mod.expand_tuner(path, None, None, data_root)
    assert [s.expid for s in again] == [s.expid for s in specs]  # stable names
    params = [load_config(out_dir, s.expid) for s in specs]
    combos = {(p["embedding_dim"], tuple(p["dnn_hidden_units"]), p["min_categr_count"]) for p in params}
    assert len(combos) == 8 and all(p["seed"] == 7 and p["learning_rate"] == 1e-3 for p in params)
    # the dataset setting gives each value its own dataset id (separate builds), paths resolved
    ids = {p["min_categr_count"]: p["dataset_id"] for p in params}
    assert len(set(ids.values())) == 2 and all(re.fullmatch(r"tiny_[0-9a-f]{8}", i) for i in ids.values())
    assert all(os.path.isabs(p["train_data"]) for p in params)
    resolved = sweep_mod.resolve(specs)
    assert len({s.config_hash for s in resolved}) == 8
    seeded = sweep_mod.expand_tuner(path, [1, 2], None, data_root)[1]
    assert len(seeded) == 16 and {s.seed for s in seeded} == {1, 2}
    with pytest.raises(CTRBenchError, match="not settings of expid DCN_tiny"):
        sweep_mod.expand_tuner(_tuner(tmp_path, {"embeding_dim": [4, 8]}), None, None, data_root)
    with pytest.raises(CTRBenchError, match="--seeds"):
        sweep_mod.parse_seeds("three")


def test_sweep_cli_tuner_runs_in_parallel_processes_then_skips(data_root, tmp_path, monkeypatch):
    from benchmark.cli import app

    monkeypatch.chdir(tmp_path)
    path = _tuner(tmp_path, {"embedding_dim": [4, 6], "model_root": str(tmp_path / "ck"), "verbose": 0})
    results = str(tmp_path / "runs.jsonl")
    runner = CliRunner()
    common = ["--jobs", "2", "--results", results, "--data-root", data_root]
    res = runner.invoke(app, ["sweep", "--tuner", path, *common])
    assert res.exit_code == 0, res.output
    records = read_records(results)
    assert len(records) == 2 and {r["config"]["embedding_dim"] for r in records} == {4, 6}
    assert all(r["expid"].startswith("DCN_tiny_00") for r in records)
    logs = os.listdir(os.path.join(sweep_mod.sweep_dir(results), "logs"))
    assert len(logs) == 2  # one process per run
    res = runner.invoke(app, ["sweep", "--tuner", path, *common, "--dry-run"])
    assert res.exit_code == 0 and res.output.count("done ") == 2
    res = runner.invoke(app, ["sweep", "--tuner", path, *common])
    assert "0 ran, 2 already done" in res.output
    res = runner.invoke(app, ["sweep", "--results", results])
    assert res.exit_code != 0


# ---- Ray dispatch with a fake ray module ------------------------------------------------------------


class Ref:
    def __init__(self, kind, value):
        self.kind, self.value = kind, value


class FakeRay:
    """Just enough of ray's API: tasks run at submission; ``fail`` names specs whose task raises."""

    def __init__(self, run=False, fail=()):
        self.inits, self.options, self.calls, self.run, self.fail = [], [], [], run, set(fail)

    def init(self, **kw):
        self.inits.append(kw)

    def cluster_resources(self):
        return {"GPU": 4.0, "CPU": 16.0}

    def remote(self, **options):
        self.options.append(options)
        ray = self

        def wrap(fn):
            class Task:
                @staticmethod
                def remote(spec, gpu, progress):
                    ray.calls.append((spec["expid"], spec["seed"], gpu))
                    if spec["run_id"] in ray.fail:
                        return Ref("error", RuntimeError("CUDA out of memory"))
                    if ray.run:
                        return Ref("ok", fn(spec, gpu, progress))
                    return Ref("ok", {"config_hash": spec["config_hash"], "test": {"AUC": 0.75}})

            return Task

        return wrap

    def wait(self, refs, num_returns, timeout):
        return list(refs), []

    def get(self, ref):
        if ref.kind == "error":
            raise ref.value
        return ref.value

    def cancel(self, ref, force=False):
        pass


def test_ray_executor_dispatches_one_gpu_per_run_and_collects_records(data_root, tmp_path):
    results = str(tmp_path / "runs.jsonl")
    specs = _specs(data_root, "DNN_tiny", 3)
    fake = FakeRay(fail={specs[2].run_id})
    ex = sweep_mod.RayExecutor("ray://head:10001", None, 1.0, 1.0, None, ray_module=fake)
    assert fake.inits[0]["address"] == "ray://head:10001" and ex.slots == 4  # 4 GPUs / 1 per run
    assert fake.options == [{"num_gpus": 1.0, "num_cpus": 1.0, "max_retries": 0}]
    log = open(tmp_path / "console.txt", "w")
    res = sweep_mod.Sweep(specs, results, ex, retries=1, console=_quiet(log), live=False).run()
    assert all(gpu == 0 for _, _, gpu in fake.calls)  # Ray masks the assigned GPU as device 0
    assert len(res.ran) == 2 and res.failed and "CUDA out of memory" in res.failed[0][1]
    assert [c[1] for c in fake.calls].count(specs[2].seed) == 2  # retried once
    assert {r["config_hash"] for r in read_records(results)} == {s.config_hash for s in specs[:2]}

    # the task body itself (what a worker runs), here on CPU
    cpu = FakeRay(run=True)
    one = _specs(data_root, "DNN_tiny", [5], f"model_root={tmp_path}/ck")
    ex = sweep_mod.RayExecutor("auto", 1, 0.0, 1.0, None, ray_module=cpu)
    res = sweep_mod.Sweep(one, results, ex, console=_quiet(log), live=False).run()
    assert res.ok and cpu.calls == [("DNN_tiny", 5, -1)]
    rec = read_records(results)[-1]
    assert rec["config_hash"] == one[0].config_hash and 0 <= rec["test"]["AUC"] <= 1


def test_ray_address_local_starts_a_ray_instance_and_a_missing_cluster_says_how_to_start_one():
    local = FakeRay()
    sweep_mod.RayExecutor("local", 1, 0.0, 1.0, None, ray_module=local)
    assert local.inits[0]["address"] is None  # ray.init() starts one in this process

    class NoCluster(FakeRay):
        def init(self, **kw):
            raise ConnectionError("Could not find any running Ray instance.")

    with pytest.raises(CTRBenchError, match=r"start one with 'ray start --head'.*--ray-address local"):
        sweep_mod.RayExecutor("auto", 1, 0.0, 1.0, None, ray_module=NoCluster())


def test_every_expid_glob_must_match(data_root):
    with pytest.raises(CTRBenchError, match=r"NoSuchNet_\* matches no expid"):
        sweep_mod.expand_expids(CONFIG, "DCN_tiny,NoSuchNet_*", None, ["verbose=0"], data_root)


# ---- GPU-path switches (exercised on CPU) ---------------------------------------------------------------


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_trains_records_the_switch_and_stays_close_to_fp32(train, amp):
    base = train("DCN_tiny", "seed=3")
    mixed = train("DCN_tiny", "seed=3", f"amp={amp}")
    assert base["amp"] is None and mixed["amp"] == amp and mixed["config"]["amp"] == amp
    assert mixed["test"]["AUC"] == pytest.approx(base["test"]["AUC"], abs=0.02)
    assert mixed["infer_ms_per_100"] > 0 and base["infer_ms_per_100"] > 0


def test_compile_and_fused_optimizer_switches_are_recorded_and_match(train):
    base = train("DNN_tiny", "seed=4")
    compiled = train("DNN_tiny", "seed=4", "compile=eager")
    assert base["compile"] is False and compiled["compile"] == "eager"
    assert compiled["test"] == base["test"]
    fused = train("DNN_tiny", "seed=4", "fused_optimizer=true")
    assert base["fused_optimizer"] is False and fused["fused_optimizer"] is True
    assert fused["test"]["AUC"] == pytest.approx(base["test"]["AUC"], abs=1e-4)  # same update, other rounding


def test_bad_amp_value_is_a_one_line_error(train):
    with pytest.raises(CTRBenchError, match="amp: bf16 or amp: fp16"):
        train("LR_tiny", "amp=int8")


# ---- plots ------------------------------------------------------------------------------------------------


def _records():
    recs = []
    for seed in (1, 2, 3):
        for model, base in (("DNN", 0.78), ("DCN", 0.79)):
            hist = [
                {"epoch": e, "step": 10 * e, "AUC": base - 0.02 / e + 0.001 * seed, "lr": 1e-3}
                for e in (1, 2, 3)
            ]
            recs.append(
                {
                    "model": model,
                    "report_name": model,
                    "dataset_id": "tiny",
                    "seed": seed,
                    "test": {"AUC": hist[-1]["AUC"], "logloss": 0.45},
                    "history": hist,
                    "best_epoch": 3,
                }
            )
    return recs


def test_plot_cli_writes_learning_curves_and_error_bars(tmp_path):
    import matplotlib.pyplot as plt

    from benchmark.cli import app

    results = tmp_path / "runs.jsonl"
    for rec in _records():
        append_record(str(results), rec)
    res = CliRunner().invoke(app, ["plot", "--results", str(results), "--out", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    paths = sorted(os.listdir(tmp_path / "plots"))
    assert paths == ["curves_tiny_AUC.png", "test_AUC_by_model.png"]
    for name in paths:
        image = plt.imread(str(tmp_path / "plots" / name))
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
        assert float(np.std(image[..., :3])) > 0.05  # not a blank canvas
    res = CliRunner().invoke(
        app, ["plot", "--results", str(results), "--out", str(tmp_path / "p2"), "--metric", "gAUC"]
    )
    assert res.exit_code != 0 and "gAUC" in str(res.exception)


def test_tuner_with_inline_sections_and_a_tbd_template(data_root, tmp_path):
    from benchmark.config import load_config, load_dataset_config

    tiny = {k: v for k, v in load_dataset_config(CONFIG, "tiny", data_root).items() if not k.startswith("_")}
    tiny.pop("dataset_id")
    doc = {
        "base_expid": "DNN_default",
        "model_config": {
            "DNN_default": {
                "model": "DNN",
                "dataset_id": "TBD",
                "hidden_units": [8],
                "batch_size": 256,
                "epochs": 1,
                "learning_rate": 1.0e-3,
            }
        },
        "dataset_id": "my_tiny",
        "dataset_config": {"my_tiny": tiny},
        "tuner_space": {"hidden_units": [[8], [16, 8]], "seed": [1, 2]},
    }
    path = tmp_path / "dnn_tuner.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out_dir, specs = sweep_mod.expand_tuner(str(path), None, None, None, CONFIG)
    assert len(specs) == 4 and all(re.fullmatch(r"DNN_my_tiny_00\d_[0-9a-f]{8}", s.expid) for s in specs)
    params = [load_config(out_dir, s.expid) for s in specs]
    assert {(tuple(p["hidden_units"]), p["seed"]) for p in params} == {
        ((8,), 1),
        ((8,), 2),
        ((16, 8), 1),
        ((16, 8), 2),
    }
    assert all(p["dataset_id"] == "my_tiny" and p["train_data"] == tiny["train_data"] for p in params)
