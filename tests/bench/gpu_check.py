"""GPU check (not a test; run where CUDA is visible): the deep classifiers train and predict on
the GPU through the same library calls the rules make (``fit_from_units`` with a CUDA device),
and what it costs.

On a synthetic two-class, two-plate task (class 1 has a bright square in channel 0; 4 x 48 x 48
crops), each model of ``CASES`` is trained for a few epochs on the GPU and then on the CPU with
the same seed; printed per model: the device its weights ended on, held-out accuracy on both
devices, seconds for both, and how far the two runs' held-out probabilities are apart
(cuDNN's kernels are not bit-identical to the CPU's, so this is a figure, not zero).

    PYTHONPATH=scripts python tests/bench/gpu_check.py
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import torch

from hcsflow.deep.train import fit_from_units

N, SIZE, CHANNELS, EPOCHS = 512, 48, 4, 8
CASES = {
    "resnet10t CE": {"architecture": "resnet10t", "loss": "ce", "batch": {"size": 32}},
    "resnet10t SupCon + CE, plate-aware, frozen BN": {
        "architecture": "resnet10t",
        "loss": "supcon_ce",
        "ce_weight": 0.5,
        "supcon_weight": 0.5,
        "temperature": 0.1,
        "batch": {"plate_aware": True, "n_plates": 2, "n_per_class": 8},
        "freeze_bn": True,
    },
    "efficientnet_b0 CE": {"architecture": "efficientnet_b0", "loss": "ce", "batch": {"size": 32}},
    "vit_tiny 32 px CE": {
        "architecture": "vit_tiny_patch16_224",
        "loss": "ce",
        "image_size": 32,
        "lr": 3e-4,
        "batch": {"size": 32},
    },
}


def task(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % 2
    raw = rng.integers(0, 300, (N, CHANNELS, SIZE, SIZE)).astype(np.uint16)
    raw[y == 1, 0, 12:36, 12:36] += 500
    idx = np.arange(N)
    split = np.where(idx % 8 < 5, "train", np.where(idx % 8 < 6, "valid", "test"))
    units = pd.DataFrame(
        {
            "Metadata_Plate": np.where(idx % 4 < 2, "P1", "P2"),
            "Metadata_Well": "B02",
            "Metadata_Site": 1,
            "Metadata_Image": "B-02-01",
            "Metadata_ObjectNumber": idx,
            "class": np.array(["neg", "pos"])[y],
            "split": split,
            "sampled": True,
        }
    )
    return raw, units


def run(cfg: dict, device) -> tuple[pd.DataFrame, float, str]:
    raw, units = task()
    full = {
        "input": "nucleocentric",
        "image_size": SIZE,
        "epochs": EPOCHS,
        "patience": EPOCHS,
        "lr": 1e-3,
        "seed": 0,
        **cfg,
    }
    t = time.perf_counter()
    out = fit_from_units(
        units,
        ["neg", "pos"],
        full,
        raw,
        np.arange(N),
        ["c0", "c1", "c2", "c3"],
        name="gpu_check",
        device=device,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    where = str(next(out["model"].parameters()).device)
    return out["predictions"], seconds, where


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: nothing to check")
    threads = min(8, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    print(
        f"torch {torch.__version__}, GPU {torch.cuda.get_device_name(0)}, CPU runs on {threads} threads"
    )
    for name, cfg in CASES.items():
        gpu, s_gpu, where = run(cfg, torch.device("cuda"))
        cpu, s_cpu, _ = run(cfg, torch.device("cpu"))
        test = gpu["split"] == "test"
        acc_gpu = float((gpu.loc[test, "pred_class"] == gpu.loc[test, "true_class"]).mean())
        acc_cpu = float((cpu.loc[test, "pred_class"] == cpu.loc[test, "true_class"]).mean())
        diff = float((gpu.loc[test, "Prob_pos"] - cpu.loc[test, "Prob_pos"]).abs().max())
        print(
            f"{name}: weights on {where}; held-out accuracy GPU {acc_gpu:.3f} / CPU {acc_cpu:.3f} "
            f"({int(test.sum())} units); {EPOCHS} epochs GPU {s_gpu:.1f} s / CPU {s_cpu:.1f} s; "
            f"max |P_GPU - P_CPU| {diff:.3g}"
        )


if __name__ == "__main__":
    main()
