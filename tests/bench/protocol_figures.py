"""The protocols' figures over training seeds: reads the ``FIGURE <protocol> <seed> <name>
<value>`` lines that ``make test-protocols`` prints with ``-s`` (tests/conftest.py, figure) from
one log per seed and writes one row per protocol and figure with the seeds, mean, sd, min, max.

    make bench-protocols                       # seeds 0-4 -> benchmarks/protocols/protocols.tsv
    python tests/bench/protocol_figures.py benchmarks/protocols/seed*.log -o protocols.tsv
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

LINE = re.compile(r"FIGURE (\S+) (\d+) (\S+) (\S+)")


def read_figures(paths) -> pd.DataFrame:
    rows = []
    for path in paths:
        for m in LINE.finditer(Path(path).read_text(errors="replace")):
            rows.append({"protocol": m[1], "seed": int(m[2]), "figure": m[3], "value": float(m[4])})
    return pd.DataFrame(rows, columns=["protocol", "seed", "figure", "value"])


def summarise(figures: pd.DataFrame) -> pd.DataFrame:
    """One row per protocol and figure: seeds (list), n, mean, sd (sample), min, max, and the
    value of each seed."""
    figures = figures.drop_duplicates(["protocol", "seed", "figure"], keep="last")
    g = figures.groupby(["protocol", "figure"], sort=False)["value"]
    out = pd.DataFrame(
        {"n_seeds": g.size(), "mean": g.mean(), "sd": g.std(ddof=1), "min": g.min(), "max": g.max()}
    )
    per_seed = figures.pivot_table(index=["protocol", "figure"], columns="seed", values="value")
    per_seed.columns = [f"seed{c}" for c in per_seed.columns]
    return out.join(per_seed).reset_index()


def markdown(table: pd.DataFrame) -> str:
    """One line per protocol figure: ``mean +- sd (min-max, n seeds)``, for docs/benchmarks.md."""
    lines = [
        "| protocol | figure | mean +- sd | min - max | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in table.itertuples():
        sd = "" if pd.isna(r.sd) else f" +- {r.sd:.3f}"
        lines.append(
            f"| {r.protocol} | {r.figure} | {r.mean:.3f}{sd} | {r.min:.3f} - {r.max:.3f} | {r.n_seeds} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("logs", nargs="+")
    ap.add_argument("-o", "--out", default=None, help="TSV to write (default: print only)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    args = ap.parse_args(argv)
    table = summarise(read_figures(args.logs))
    if args.markdown:
        print(markdown(table))
        return 0
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.round(3).to_string(index=False))
    if args.out:
        table.to_csv(args.out, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
