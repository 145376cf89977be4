"""Rule train_stardist: train StarDist 2D for nuclei, save the model folder + curve."""

import contextlib
import os
import shutil
from pathlib import Path

from hcsflow import io
from hcsflow.runner import limit_threads, rule_logging
from hcsflow.segment import train as segtrain

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    cfg = snakemake.params.train
    data = segtrain.load_training_npz(snakemake.input.data)
    params = segtrain.StarDistTrainParams(
        pretrained=None if cfg["start"] == "scratch" else cfg["start"],
        n_rays=cfg["n_rays"],
        grid=cfg["grid"],
        patch_size=cfg["patch_size"],
        batch_size=cfg["batch_size"],
        epochs=cfg["epochs"],
        steps_per_epoch=cfg["steps_per_epoch"],
        learning_rate=cfg["learning_rate"],
        unet_n_depth=cfg["unet_n_depth"],
        unet_n_filter_base=cfg["unet_n_filter_base"],
        augment=cfg["augment"],
        seed=cfg["seed"],
    )
    log.info(
        "training StarDist on %d images (%d validation): %s",
        len(data["train"][0]),
        len(data["valid"][0]),
        params,
    )
    final = Path(snakemake.output.model[0]).parent
    work = final.parent / f".{final.name}.training"
    shutil.rmtree(work, ignore_errors=True)
    try:
        # StarDist trains with Keras' progress bar hard-wired on (verbose=1): send it to the rule's
        # log (plain per-epoch lines there) instead of flooding the terminal.
        with open(snakemake.log[0], "a") as progress, contextlib.redirect_stdout(progress):
            folder, history = segtrain.train_stardist(
                *data["train"],
                basedir=work,
                model_name=final.name,
                params=params,
                valid_images=data["valid"][0] or None,
                valid_labels=data["valid"][1] or None,
            )
        for f in snakemake.output.model:
            if not (folder / Path(f).name).is_file():
                raise FileNotFoundError(f"StarDist did not write {Path(f).name} in {folder}")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(folder, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    io.write_table(history, snakemake.output.history)
    io.save_figure(segtrain.plot_history(history, f"StarDist {final.name}"), snakemake.output.curve)
    log.info("saved %s", final)
