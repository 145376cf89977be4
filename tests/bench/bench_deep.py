"""Deep-model benchmarks (never asserted): the crop loader's throughput and seconds per training
step on the CPU (and on a GPU when one is visible; `--gpu-only`: the GPU part alone).

Loader: N preloaded uint16 crops of 4 x 128 x 128 -> normalised (percentile), padded/resized,
augmented (training) float batches of 256, on 2 threads. Target: >= 2,000 crops/s.
Training step: forward + backward + Adam step of a batch of 32.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hcsflow.deep.data import Normaliser, Transform
from hcsflow.deep.losses import DeepLoss
from hcsflow.deep.models import create_model, forward

THREADS = 2


def loader(n=4096, size=128, batch=256, augment=True, out_size=128):
    raw = np.random.default_rng(0).integers(0, 4000, (n, 4, size, size)).astype(np.uint16)
    tf = Transform(Normaliser("percentile").fit(raw, np.arange(512)), out_size)
    gen = torch.Generator().manual_seed(0)
    perm = np.random.default_rng(1).permutation(n)
    tf(raw, perm[:batch], gen=gen, augment={} if augment else None)  # warm-up
    t = time.perf_counter()
    for i in range(0, n, batch):
        tf(raw, perm[i : i + batch], gen=gen, augment={} if augment else None)
    return n / (time.perf_counter() - t)


def step_seconds(arch, size, in_chans=4, batch=32, steps=5, device="cpu", loss="ce"):
    torch.manual_seed(0)
    model = create_model(arch, in_chans, 3, size).to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    fn = DeepLoss(loss, ce_weight=0.5, supcon_weight=0.5)
    x = torch.rand(batch, in_chans, size, size, device=device)
    y = torch.arange(batch, device=device) % 3

    def step():
        logits, emb = forward(model, x)
        total, _ = fn(logits, emb, y)
        opt.zero_grad()
        total.backward()
        opt.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def main(gpu_only: bool = False):
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {THREADS} threads; machine load matters: see uptime")
    if not gpu_only:
        print(f"loader 4x128x128 -> 128 px, augmented:     {loader():8.0f} crops/s")
        print(f"loader 4x128x128 -> 128 px, evaluation:    {loader(augment=False):8.0f} crops/s")
        print(
            f"loader 4x60x60   -> 48 px,  augmented:     {loader(size=60, out_size=48):8.0f} crops/s"
        )
    cases = [
        ("resnet10t", 48, "ce"),
        ("resnet10t", 48, "supcon_ce"),
        ("vit_tiny_patch16_224", 32, "ce"),
        ("resnet10t", 128, "ce"),
        ("efficientnet_b0", 128, "ce"),
        ("resnet50", 128, "ce"),
    ]
    for arch, size, loss in [] if gpu_only else cases:
        steps = 1 if size >= 128 else 5
        print(
            f"train step CPU {arch:>22} {size:>3} px {loss:>9}, batch 32: "
            f"{step_seconds(arch, size, steps=steps, loss=loss):7.3f} s"
        )
    if torch.cuda.is_available():
        for arch, size, loss in cases:
            print(
                f"train step GPU {arch:>22} {size:>3} px {loss:>9}, batch 32: "
                f"{step_seconds(arch, size, steps=20, device='cuda', loss=loss):7.4f} s"
            )
    else:
        print("no GPU visible: GPU step times not measured")


if __name__ == "__main__":
    import sys

    main(gpu_only="--gpu-only" in sys.argv[1:])  # --gpu-only: the GPU step times alone
