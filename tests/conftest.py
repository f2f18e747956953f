"""Shared fixtures: a per-worker data root so parallel test workers never share build folders."""

from __future__ import annotations

import os

import pytest

# One intra-op thread per test process and the runs it starts (set before torch is imported): two
# pytest workers on two CPUs with torch's default of a thread per core oversubscribe the machine, and
# the small steps of the suite then mostly wait on each other (a table's `reproduce --check` took 4x the
# CPU time with two threads). An explicit OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "config")
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def load(data_root):
    """load(expid, *sets) -> resolved params with data under the per-worker data root."""
    from benchmark.config import load_config

    def _load(expid, *sets, config=CONFIG):
        params = load_config(config, expid, ["verbose=0", *sets], data_root)
        params["model_root"] = os.path.join(data_root, "checkpoints")
        return params

    return _load


@pytest.fixture(scope="session")
def train(load):
    """train(expid, *sets) -> run record (no records file)."""
    from benchmark.runner import RunOptions, run

    def _train(expid, *sets, config=CONFIG):
        return run(load(expid, *sets, config=config), RunOptions(quiet=True)).record

    return _train


def frappe_available() -> bool:
    return os.path.isfile(os.path.join(SHARED_DATA, "Frappe_x1", "valid.csv"))
