"""Citations a reader of the repository can follow.

The implementation specs the zoo was written from are not part of the repository, so no comment, docstring
or document may cite them. Cite the paper's own section, table, figure or equation, the authors' code or
logs (repository and file), or docs/decisions.md for a paper-vs-code choice. This test scans every tracked
text file (``git ls-files``: *.py, *.yaml / *.yml, *.md, Makefile, README) and names file:line for each line
that points at a spec file, a section of one or their folder.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess

import pytest

from tests.conftest import REPO

# Names of the implementation specs (kept outside the repository); a path in the repository with one of
# these names is fine, see ``_missing_md``.
SPEC_NAMES = ("ibnet", "tf4ctr", "dlf", "sfg", "maskfusion", "fuxictr", "datasets", "prior_art")


def _cite(text: str) -> str:
    """Example lines are written with "@" for the word and "%" for the suffix, so that this file cites no
    spec itself."""
    return text.replace("@", "spec").replace("%", ".md")


# name, pattern (case-insensitive), lines it must flag, lines it must leave alone
PATTERNS = [
    (
        "spec file",
        r"\bspecs?[/ ]\w+\.md\b",
        ["# settings (@ ibnet% §8)", "# template (@s/dlf% §9)", "(@ tf4ctr%: embedding 16)"],
        ["for spec in specs:", "see docs/decisions.md (IBNet)"],
    ),
    (
        "spec section",
        r"\bspecs?(?:\.md)?\s*§",
        ['"""Closed form (@ §2-§4)."""', "# ---- the released model (@ §4.2) ----", "@ § 3"],
        ["(paper §V-A.3 and the authors' code)", "spectrum §4.3.1"],
    ),
    (
        "specs folder",
        r"\bspecs?/",
        ["# see @s/maskfusion% section 8", "../@s/"],
        ["feature_specs/", "self.specs = {}"],
    ),
    (
        "spec item",
        r"\bspecs? (?:A\d+|section \d)",
        ["(ms, unit undefined, @ A16)", "min count 2, @ A13)", "@ section 2.9"],
        ["spec = HOST_KW[host]", "Outcome(spec, True)"],
    ),
    (
        "spec as a source",
        r"\bthe specs?\b|\bspecs'",
        ["from the @'s shapes", "closed form and the @s' logged numbers", "as the @ says"],
        ["the data specs excluded", "feature specs (one per name)", "test_oracles_from_the_spec():"],
    ),
    (
        "spec file by name",
        r"(?<![\w/.-])(?:[\w.-]+/)*(?:" + "|".join(SPEC_NAMES) + r")\.md\b",
        ["(ibnet% §13)", "sfg% §10", "../prior_art%"],
        ["docs/decisions.md", "results/runs_table.md"],
    ),
]

# (path, the line's text stripped) of lines allowed to match; keep it empty
ALLOWED: set[tuple[str, str]] = set()

TEXT_SUFFIXES = (".py", ".yaml", ".yml", ".md")


def _tracked_text_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout: no tracked files to scan")
    names = [p for p in out.split("\0") if p]
    keep = [
        p
        for p in names
        if p.endswith(TEXT_SUFFIXES)
        or os.path.basename(p) == "Makefile"
        or os.path.basename(p).startswith("README")
    ]
    return sorted(p for p in keep if os.path.isfile(os.path.join(REPO, p)))


@functools.cache
def _files() -> list[str]:
    return _tracked_text_files()


def _missing_md(match: re.Match, tracked: set[str]) -> bool:
    """A spec's name cites that spec unless the path it names is a file of the repository."""
    return match.group(0).lstrip("./") not in tracked


def _hits(pattern: str, files: list[str]) -> list[str]:
    regex = re.compile(pattern, re.IGNORECASE)
    tracked = set(files)
    by_name = pattern == PATTERNS[-1][1]
    found = []
    for path in files:
        with open(os.path.join(REPO, path), encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                matches = [m for m in regex.finditer(line) if not by_name or _missing_md(m, tracked)]
                if matches and (path, line.strip()) not in ALLOWED:
                    found.append(f"{path}:{number}: {line.strip()[:160]}")
    return found


@pytest.mark.parametrize("name,pattern,flagged,kept", PATTERNS, ids=[p[0] for p in PATTERNS])
def test_pattern_flags_citations_and_leaves_code_alone(name, pattern, flagged, kept):
    regex = re.compile(pattern, re.IGNORECASE)
    for line in flagged:
        assert regex.search(_cite(line)), f"{name}: should flag {_cite(line)!r}"
    for line in kept:
        assert not regex.search(line), f"{name}: should not flag {line!r}"


def test_the_scan_sees_the_repository():
    files = _files()
    for expected in ("tests/conftest.py", "docs/decisions.md", "README.md", "Makefile"):
        assert expected in files
    assert any(p.startswith("results/targets/") and p.endswith(".yaml") for p in files)
    assert any(p.startswith("config/model_config/") for p in files)


@pytest.mark.parametrize("name,pattern", [p[:2] for p in PATTERNS], ids=[p[0] for p in PATTERNS])
def test_no_line_cites_a_spec(name, pattern):
    hits = _hits(pattern, _files())
    assert not hits, (
        f"{len(hits)} line(s) cite the implementation specs ({name}), which are not in the repository; cite "
        "the paper's section/table/equation, the authors' code or logs, or docs/decisions.md instead:\n"
        + "\n".join(hits)
    )


def test_allow_list_has_no_stale_entries():
    files = set(_files())
    for path, text in ALLOWED:
        assert path in files, f"allow-listed {path} is not tracked"
        with open(os.path.join(REPO, path), encoding="utf-8", errors="replace") as fh:
            assert text in (line.strip() for line in fh), f"allow-listed line is gone from {path}: {text!r}"
