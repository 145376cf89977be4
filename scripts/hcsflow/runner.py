"""Glue between a rule script and the library: logging to the rule's log file, device choice.

Every rule script does::

    from hcsflow.runner import rule_logging
    with rule_logging(snakemake) as log:
        ...

so that progress and errors land in the rule's ``log:`` file (and, for errors, on stderr too),
whatever environment the rule runs in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def rule_logging(smk, name: str | None = None):
    """Send ``logging`` output of the rule to its first log file; log and re-raise any error."""
    log_files = list(getattr(smk, "log", []) or [])
    name = name or f"hcsflow.{getattr(smk, 'rule', 'rule')}"
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = []
    if log_files:
        Path(log_files[0]).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_files[0], mode="w")
        fh.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(logging.WARNING)
    sh.setFormatter(logging.Formatter(LOG_FORMAT))
    handlers.append(sh)
    for h in handlers:
        root.addHandler(h)
    logger = logging.getLogger(name)
    start = time.perf_counter()
    wildcards = dict(getattr(smk, "wildcards", {}) or {})
    logger.info(
        "start %s %s (threads=%s)",
        getattr(smk, "rule", "?"),
        wildcards,
        getattr(smk, "threads", "?"),
    )
    try:
        yield logger
    except BaseException:
        logger.exception("failed after %.1f s", time.perf_counter() - start)
        raise
    else:
        logger.info("done in %.1f s", time.perf_counter() - start)
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
_LIMITERS: list = []  # keeps threadpoolctl's limits alive for the life of the job


def limit_threads(n: int) -> dict:
    """Keep numerical libraries to the ``n`` threads Snakemake gave the job (clusters oversubscribe).

    Works after numpy is imported (a rule script imports numpy long before it knows its threads):
    the BLAS / OpenMP pools already loaded are limited through threadpoolctl; the environment
    variables are set too (overwriting Snakemake's own), for libraries loaded later and for
    subprocesses and torch (which reads OMP_NUM_THREADS when it loads; one already loaded is set).
    Returns what was limited: ``{'n': n, 'pools': [...], 'torch': bool}``.
    """
    n = max(1, int(n))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    pools = []
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        _LIMITERS.append(threadpool_limits(limits=n))
        pools = sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()})
    except ImportError:  # pragma: no cover - threadpoolctl is in every env
        pass
    # torch reads OMP_NUM_THREADS when it loads; one already loaded is set directly (importing it
    # here would cost a StarDist job seconds for nothing).
    limited_torch = "torch" in sys.modules
    if limited_torch:
        sys.modules["torch"].set_num_threads(n)
    logging.getLogger("hcsflow").info(
        "threads limited to %d: %s", n, ", ".join(pools) or "no pools"
    )
    return {"n": n, "pools": pools, "torch": limited_torch}


def torch_device(prefer_gpu: bool = True, logger: logging.Logger | None = None):
    """Return a CUDA device when one is usable, else the CPU, and say which in the log.

    On a SLURM GPU node whose GPU is not visible (or a fake GRES as in our tests), CUDA is not
    available and the job falls back to the CPU instead of failing.
    """
    import torch

    logger = logger or logging.getLogger("hcsflow")
    if prefer_gpu and torch.cuda.is_available():
        dev = torch.device("cuda")
        logger.info("using GPU %s", torch.cuda.get_device_name(0))
        return dev
    if prefer_gpu:
        logger.warning(
            "no usable GPU (CUDA_VISIBLE_DEVICES=%s); falling back to CPU",
            os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        )
    return torch.device("cpu")


def job_files(directory, images, suffix: str) -> list[str]:
    """Per member image of a batched job, its file in the job's output directory
    (``{directory}/{image}{suffix}``, hcsflow.batches); creates the directory, so a job whose
    images all fail still leaves its (declared) output."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [f"{directory}/{image}{suffix}" for image in images]
