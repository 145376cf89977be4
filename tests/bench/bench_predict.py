"""Prediction on new plates: cells/s on the CPU and peak memory against the batch size.

1,000 synthetic cells go through hcsflow.predict.predict_batches with (a) a classical Random
Forest (hcsflow.classify.classical, 300 trees, 200 feature columns) and (b) a deep model (hcsflow.deep,
timm resnet10t on 4 x 60 x 60 crops resized to 32 px), each in a fresh process so its peak
resident memory during prediction (VmHWM, reset after loading the model) is its own. The deep
model runs in batches of 64 and 256 and with all 1,000 cells in one batch (what Deeptosis did):
the batched runs' peak stays near the model plus one batch, the unbatched one grows with the
cells. Larger batches are faster per cell on the CPU (convolutions are more efficient), hence
predict.batch_size 256 by default. Reports, never asserts.

    python tests/bench/run_benchmarks.py bench_predict
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CELLS = 1000


def _status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


def make_models(folder: Path) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from hcsflow.classify import classical
    from hcsflow.deep.data import Normaliser
    from hcsflow.deep.models import create_model

    rng = np.random.default_rng(0)
    cols = [f"Cells_Ch{i % 4}_Feature{i}" for i in range(200)]
    x = rng.normal(size=(600, 200))
    y = np.where(x[:, 0] + x[:, 1] > 0, "a", "b")
    train = pd.DataFrame(x, columns=cols).assign(**{"class": y})
    bundle = classical.train_model(
        train,
        cols,
        ["a", "b"],
        estimator="RandomForestClassifier",
        params={"n_estimators": 300},
        preprocessing={"feature_select": []},
    )
    (folder / "rf").mkdir()
    classical.save_model(
        bundle,
        classical.model_info(bundle, name="rf", unit="cell"),
        folder / "rf" / "model.joblib",
        folder / "rf" / "model.json",
    )
    (folder / "cnn").mkdir()
    model = create_model("resnet10t", 4, 2, 32)
    torch.save(model.state_dict(), folder / "cnn" / "model.pt")
    raw = rng.integers(0, 4000, (200, 4, 60, 60)).astype(np.uint16)
    norm = Normaliser(method="percentile").fit(raw)
    (folder / "cnn" / "model.json").write_text(
        json.dumps(
            {
                "kind": "torch",
                "name": "cnn",
                "classes": ["a", "b"],
                "unit": "cell",
                "channels": ["Ch0", "Ch1", "Ch2", "Ch3"],
                "in_chans": 4,
                "architecture": "resnet10t",
                "input": "nucleocentric",
                "image_size": 32,
                "normalisation": norm.to_dict(),
            }
        )
    )


def run_one(folder: Path, which: str, batch: int) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from hcsflow.predict import cells as predict_cells
    from hcsflow.predict import model as saved_model

    torch.set_num_threads(2)
    rng = np.random.default_rng(1)
    meta = pd.DataFrame(
        {
            "Metadata_Plate": "P",
            "Metadata_Well": "B02",
            "Metadata_Site": 1,
            "Metadata_Image": "B-02-01",
            "Metadata_ObjectNumber": np.arange(1, N_CELLS + 1),
        }
    )
    if which == "rf":
        info = saved_model.load_model_info(folder / "rf" / "model.json")
        inputs = pd.DataFrame(
            rng.normal(size=(N_CELLS, len(info["features"]))), columns=info["features"]
        )
        predictor = saved_model.sklearn_predictor(info)
    else:
        info = saved_model.load_model_info(folder / "cnn" / "model.json")
        inputs = rng.integers(0, 4000, (N_CELLS, 4, 60, 60)).astype(np.uint16)
        predictor = saved_model.torch_predictor(info, device=torch.device("cpu"))
    predictor(inputs[:2] if which != "rf" else inputs.iloc[:2], meta.iloc[:2])  # warm-up
    _reset_peak()
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    pred = predict_cells.predict_batches(predictor, inputs, meta, batch)
    dt = time.perf_counter() - t0
    assert len(pred) == N_CELLS
    return {
        "model": which,
        "batch": batch,
        "seconds": dt,
        "cells_per_s": N_CELLS / dt,
        "rss_before_mb": base,
        "peak_rss_mb": _status_mb("VmHWM"),
    }


def main() -> None:
    if len(sys.argv) == 4:  # child: one measurement
        print(json.dumps(run_one(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_models(folder)
        print(
            f"prediction of {N_CELLS} cells on the CPU ({os.cpu_count()} cores; load {os.getloadavg()[0]:.1f})"
        )
        print(
            f"{'model':6} {'batch':>6} {'seconds':>8} {'cells/s':>9} {'RSS before':>11} {'peak RSS':>9}"
        )
        for which, batch in [("rf", 256), ("cnn", 64), ("cnn", 256), ("cnn", N_CELLS)]:
            proc = subprocess.run(
                [sys.executable, __file__, str(folder), which, str(batch)],
                capture_output=True,
                text=True,
                env=os.environ,
            )
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{r['model']:6} {r['batch']:>6} {r['seconds']:>8.2f} {r['cells_per_s']:>9.0f} "
                f"{r['rss_before_mb']:>9.0f} MB {r['peak_rss_mb']:>6.0f} MB"
            )


if __name__ == "__main__":
    main()
