"""Run every benchmark script in tests/bench/ (bench_*.py) and collect their reports.

Benchmarks measure seconds and peak memory; they never assert on speed. Each script prints its
report; this runner stores it under benchmarks/<name>.txt and prints a summary.

    make bench                       # all
    python tests/bench/run_benchmarks.py bench_dag   # one
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem in wanted)
    out_dir = REPO / "benchmarks"
    out_dir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"), TF_CPP_MIN_LOG_LEVEL="2")
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True
        )
        report = proc.stdout + (f"\n[stderr]\n{proc.stderr[-4000:]}" if proc.returncode else "")
        (out_dir / f"{script.stem}.txt").write_text(report)
        print(report.rstrip())
        print(
            f"   ({time.perf_counter() - start:.0f} s, exit {proc.returncode}) -> benchmarks/{script.stem}.txt"
        )
        if proc.returncode:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
