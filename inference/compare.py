"""Entry point: ``python -m inference.compare DIR [DIR ...] [--out DIR]`` turns the runs of one
or more sweeps into a table (markdown and CSV) and figures, and prints the table.

A run is any folder below the given ones that holds ``.hydra/overrides.yaml``. Its columns are
the overrides that differ between runs, then the test metrics; runs without a readable
``metrics.json`` are listed with their status instead of stopping the comparison.
"""

import argparse
from pathlib import Path

from .runs.comparison import compare


def arguments() -> argparse.ArgumentParser:
    """The command's arguments (the docs' test composes the documented commands with it)."""
    parser = argparse.ArgumentParser(prog="python -m inference.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders (multirun/DATE/TIME) or folders of runs")
    parser.add_argument("--out", type=Path, help="where to write the table and figures (default: the first folder)")
    parser.add_argument("--baseline", type=Path, help="the run the paired differences are against (default: the first complete run)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = arguments()
    args = parser.parse_args(argv)
    try:
        records = compare(args.dirs, args.out or args.dirs[0], args.baseline)
    except FileNotFoundError as e:
        parser.exit(2, f"error: {e}\n")
    print((args.out or args.dirs[0]).joinpath("compare.md").read_text(), end="")
    bad = [r for r in records if r["status"] != "complete"]
    if bad:
        print(f"{len(bad)} of {len(records)} runs not complete: " + ", ".join(f"{r['run'].name} ({r['status']})" for r in bad))


if __name__ == "__main__":
    main()
