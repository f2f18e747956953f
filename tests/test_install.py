"""The ordinary installs, as a user makes them: a fresh venv (no system site-packages), fuxictr from the
registry beside the project, ``pip install -e .``, ``pip install -e '.[tune]'`` and ``pip install .``,
then ``ctrbench`` from another folder.

The fuxictr 2.3.10 wheel puts a ``model_zoo/`` folder without ``__init__.py`` into site-packages; each
install must still import this project's ``model_zoo``, and a non-editable install must carry its configs.
Slow (a venv and its packages): ``make test-install`` runs it (CTRBENCH_INSTALL_TEST=1), as CI does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

pytestmark = [
    pytest.mark.install,
    pytest.mark.skipif(
        os.environ.get("CTRBENCH_INSTALL_TEST") != "1", reason="make test-install runs the install test"
    ),
]


def _sh(args, cwd, timeout=1500, env=None):
    out = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert out.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    )
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The tracked files of this checkout as they are now (a clone of the working tree)."""
    dest = tmp_path_factory.mktemp("install") / "ctrbench"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = os.path.join(REPO, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(dest / name), exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with this machine's torch version (the CPU build the pip configuration serves)."""
    path = tmp_path_factory.mktemp("venv") / "v"
    _sh([sys.executable, "-m", "venv", path], cwd=path.parent)
    version = torch.__version__.split("+")[0]
    _sh([path / "bin" / "pip", "install", "-q", f"torch=={version}"], cwd=path.parent)
    return path


def _ctrbench_run(venv, where, data):
    """``ctrbench models`` and a tiny run from a folder outside the project; returns the record. ``data``:
    where its data must land (the checkout's data/ for an editable install, ./data for a plain one)."""
    where.mkdir(parents=True, exist_ok=True)
    listing = _sh([venv / "bin" / "ctrbench", "models"], cwd=where)
    assert "DCN" in listing and "IBNet" in listing
    out = _sh([venv / "bin" / "ctrbench", "run", "--expid", "DCN_tiny", "--set", "epochs=1"], cwd=where)
    assert "DCN_tiny test:" in out
    records = (where / "results" / "runs.jsonl").read_text().splitlines()
    assert len(records) == 1
    assert (data / "tiny").is_dir(), f"the data of the run is not under {data}"
    return json.loads(records[0]), out


def _zoo_file(venv, where):
    return _sh(
        [
            venv / "bin" / "python",
            "-c",
            "import model_zoo; print(model_zoo.__file__, len(model_zoo.registry()))",
        ],
        cwd=where,
    )


def test_editable_install_imports_the_projects_model_zoo(project, venv, tmp_path):
    _sh([venv / "bin" / "pip", "install", "-q", "-e", project], cwd=tmp_path)
    site = _sh(
        [venv / "bin" / "python", "-c", "import fuxictr, os; print(os.path.dirname(fuxictr.__path__[0]))"],
        cwd=tmp_path,
    )
    assert os.path.isdir(os.path.join(site.strip(), "model_zoo")), (
        "fuxictr's wheel no longer ships model_zoo/"
    )
    assert _zoo_file(venv, tmp_path).startswith(str(project / "model_zoo" / "__init__.py"))
    record, _ = _ctrbench_run(venv, tmp_path / "editable", project / "data")
    assert record["expid"] == "DCN_tiny"


def test_editable_install_with_an_extra(project, venv, tmp_path):
    _sh([venv / "bin" / "pip", "install", "-q", "-e", f"{project}[tune]"], cwd=tmp_path)
    assert _zoo_file(venv, tmp_path).startswith(str(project / "model_zoo" / "__init__.py"))
    _sh([venv / "bin" / "python", "-c", "import optuna, benchmark.tune"], cwd=tmp_path)
    _ctrbench_run(venv, tmp_path / "extra", project / "data")


def test_plain_install_carries_its_configs(project, venv, tmp_path):
    _sh([venv / "bin" / "pip", "uninstall", "-q", "-y", "ctrbench"], cwd=tmp_path)
    _sh([venv / "bin" / "pip", "install", "-q", project], cwd=tmp_path)
    zoo = _zoo_file(venv, tmp_path)
    assert "site-packages" in zoo and str(project) not in zoo
    record, out = _ctrbench_run(venv, tmp_path / "plain", tmp_path / "plain" / "data")
    assert record["config"]["data_root"].startswith(str(tmp_path / "plain"))
    where = dict(
        line.split(": ", 1)
        for line in out.splitlines()
        if line.startswith(("record: ", "checkpoint: ", "log: "))
    )
    assert where["record"] == str(tmp_path / "plain" / "results" / "runs.jsonl")
    assert os.path.isfile(where["checkpoint"]) and os.path.isfile(where["log"])
    assert where["checkpoint"].startswith(str(tmp_path / "plain" / "checkpoints"))
