"""Repeated training runs: every model trained N times with seeds base + 0 .. base + N - 1.

A figure from one training seed is one draw (another machine of the same kind draws another:
other vector kernels, other float summation order). ``classify.repeats: N`` trains each model N
times on the same split; the run of repeat 0 keeps the model's own name and folder
(``results/classify/RF/``: prediction and the report use it), repeat r > 0 is the run
``RF/seed<r>`` in ``results/classify/RF/seed<r>/`` with the same outputs. ``summary.tsv`` gives
mean, sd, min and max over the repeats (:func:`hcsflow.classify.evaluate.summary_table`).
"""

from __future__ import annotations

import re

_RUN = re.compile(r"^(?P<model>.+)/seed(?P<repeat>\d+)$")


def run_names(model: str, repeats: int = 1) -> list[str]:
    """The run names of ``model``: itself, then ``model/seed1`` .. ``model/seed<repeats-1>``."""
    if repeats < 1:
        raise ValueError(f"classify.repeats must be >= 1, not {repeats}")
    return [model] + [f"{model}/seed{r}" for r in range(1, repeats)]


def parse_run(run: str) -> tuple[str, int]:
    """``(model, repeat)`` of a run name (``'RF'`` -> ``('RF', 0)``, ``'RF/seed2'`` -> ``('RF', 2)``)."""
    m = _RUN.match(run)
    return (m["model"], int(m["repeat"])) if m else (run, 0)


def run_seed(run: str, base_seed: int) -> int:
    """The training seed of a run: the model's own seed plus its repeat number."""
    return int(base_seed) + parse_run(run)[1]
