"""Search a targets row's hyperparameters for the paper's printed #Params.

Every combination of the ``--grid`` values is applied on top of the row's resolved cell config (the
targets file's ``set:`` blocks and the row's expid) and the model is built on the authors' logged
vocabularies (tests/test_param_counts.py) on the meta device, so no embedding table is allocated.
Prints, best first, each combination with its count per column against the printed #Params and
whether it lies within max(0.1M, 1.5%) of it.

    python scripts/search_param_counts.py results/targets/ibnet_table4.yaml AFNPlus \
        --grid 'logarithmic_neurons=[400, 800, 1200, 1500]' --grid 'afn_hidden_units=[[400], [800, 800]]'
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.test_param_counts import cell_count, paper_cells, printed_params, within  # noqa: E402


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    grid = []
    for item in items:
        key, _, values = item.partition("=")
        parsed = yaml.safe_load(values)
        if not key or not isinstance(parsed, list) or not parsed:
            raise SystemExit(f"error: --grid {item!r}: use KEY=[v1, v2, ...] (a YAML list)")
        grid.append((key.strip(), parsed))
    return grid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", help="results/targets/<name>.yaml")
    parser.add_argument("row", help="the row (registry name) to size")
    parser.add_argument("--columns", nargs="*", help="columns to size (default: every column the row prints)")
    parser.add_argument("--grid", action="append", default=[], help="KEY=[v1, v2, ...]; repeatable")
    parser.add_argument("--top", type=int, default=15, help="combinations to print")
    args = parser.parse_args(argv)

    cells = [c for c in paper_cells(args.targets) if c.row == args.row]
    if args.columns:
        cells = [c for c in cells if c.column in args.columns]
    if not cells:
        raise SystemExit(
            f"error: {args.targets} prints no #Params for row {args.row!r} (columns {args.columns})"
        )
    grid = parse_grid(args.grid)
    results = []
    for values in itertools.product(*[v for _, v in grid]):
        over = {k: v for (k, _), v in zip(grid, values)}
        row = []
        for cell in cells:
            try:
                n = cell_count(args.targets, cell, over)
            except Exception as exc:  # a combination the model refuses (e.g. heads not dividing a width)
                n = exc
            row.append((cell, n))
        results.append((over, row))

    def score(item):
        _, row = item
        counts = [(n, printed_params(c)) for c, n in row]
        if any(isinstance(n, Exception) for n, _ in counts):
            return (len(counts) + 1, 0.0)
        misses = sum(not within(n, p) for n, p in counts)
        return (misses, sum(abs(n - p) / p for n, p in counts))

    for over, row in sorted(results, key=score)[: args.top]:
        cols = []
        for cell, n in row:
            p = printed_params(cell)
            if isinstance(n, Exception):
                cols.append(f"{cell.column}: {type(n).__name__}")
            else:
                mark = "ok" if within(n, p) else "--"
                cols.append(f"{cell.column}: {n / 1e6:.3f}M vs {p / 1e6:.3f}M {mark}")
        print(f"{over}\n    " + " | ".join(cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
