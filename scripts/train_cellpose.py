"""Rule train_cellpose: train / fine-tune Cellpose (CELLULAR protocol), save weights + curve."""

import os
import shutil
from pathlib import Path

from hcsflow import io
from hcsflow.runner import limit_threads, rule_logging, torch_device
from hcsflow.segment import models
from hcsflow.segment import train as segtrain

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    cfg = snakemake.params.train
    data = segtrain.load_training_npz(snakemake.input.data)
    start = cfg["start"]
    pretrained = None
    if start != "scratch":
        pretrained = models.resolve_cellpose(
            start, snakemake.params.models_dir, "segmentation.train.cellpose.start"
        ).path
    params = segtrain.CellposeTrainParams(
        pretrained=str(pretrained) if pretrained else None,
        sgd=cfg["optimizer"] == "sgd",
        learning_rate=cfg["learning_rate"],
        weight_decay=cfg["weight_decay"],
        batch_size=cfg["batch_size"],
        n_epochs=cfg["n_epochs"],
        rescale=cfg["rescale"],
        diam_mean=cfg["diam_mean"],
        bsize=cfg["bsize"],
        nimg_per_epoch=cfg["nimg_per_epoch"],
        min_train_masks=cfg["min_train_masks"],
        seed=cfg["seed"],
    )
    log.info(
        "training Cellpose from %s on %d images (%d validation): %s",
        start,
        len(data["train"][0]),
        len(data["valid"][0]),
        params,
    )
    out = Path(snakemake.output.model)
    work = out.parent / f".{out.name}.training"
    shutil.rmtree(work, ignore_errors=True)
    try:
        path, history = segtrain.train_cellpose(
            *data["train"],
            save_dir=work,
            model_name=out.name,
            params=params,
            valid_images=data["valid"][0] or None,
            valid_labels=data["valid"][1] or None,
            device=torch_device(prefer_gpu=bool(snakemake.params.gpu), logger=log),
        )
        os.replace(path, out)  # same folder tree: an atomic rename
    finally:
        shutil.rmtree(work, ignore_errors=True)
    io.write_table(history, snakemake.output.history)
    io.save_figure(segtrain.plot_history(history, f"Cellpose {out.name}"), snakemake.output.curve)
    log.info("saved %s (final train loss %.4f)", out, float(history["train_loss"].iloc[-1]))
