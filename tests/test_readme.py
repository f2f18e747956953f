"""The README's quick start runs top to bottom as written: every ``ctrbench`` line of its first bash
block, in order, in a fresh working folder (lines that need a GPU run where one is present)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


def quick_start_commands() -> list[str]:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("ctrbench ")]


def test_quick_start_names_commands():
    commands = quick_start_commands()
    assert any(c.startswith("ctrbench run ") for c in commands)
    assert any(c.startswith("ctrbench report") for c in commands)


@pytest.mark.slow
def test_quick_start_runs_top_to_bottom(tmp_path):
    env = dict(os.environ, COLUMNS="200")
    for command in quick_start_commands():
        args = shlex.split(command)
        if "--gpu" in args and args[args.index("--gpu") + 1] != "-1" and not torch.cuda.is_available():
            continue
        out = subprocess.run(
            [sys.executable, "-m", "benchmark", *args[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert out.returncode == 0, (
            f"README quick start: {command!r} exited {out.returncode}:\n{out.stdout}{out.stderr}"
        )
