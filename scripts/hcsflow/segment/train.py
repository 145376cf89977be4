"""Fine-tuning / training segmentation models (CELLULAR protocol) on images with true masks.

Steps, each a plain function:

1. masks: :func:`combine_object_masks` turns per-object binary mask images (CELLULAR's format)
   into one label image; label images are used as they are.
2. split: :func:`split_images` assigns every image to ``train`` / ``valid`` / ``test``, either by
   filename patterns (CELLULAR) or by a seeded random fraction of *wells* (cells of one well never
   land in two splits, which would inflate the scores).
3. train: :func:`train_cellpose` (``cellpose.train.train_seg``, from a pretrained model or from
   scratch) and :func:`train_stardist` (``StarDist2D.train`` + threshold optimisation). Both return
   the model location and a loss history table; :func:`plot_history` draws the training curve.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("hcsflow.segment.train")

SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------
# Masks and splits
# ---------------------------------------------------------------------------------------------
def combine_object_masks(masks: Sequence[np.ndarray], threshold: float = 0) -> np.ndarray:
    """Combine per-object binary masks into one label image (object ``i`` -> label ``i + 1``).

    Pixels claimed by two objects keep the first object's label (later masks only fill
    background), so no object silently swallows another. Empty masks are skipped and the labels
    stay consecutive.
    """
    masks = [np.asarray(m) for m in masks]
    if not masks:
        raise ValueError("no object masks to combine")
    shape = masks[0].shape
    labels = np.zeros(shape[:2], dtype=np.uint32)
    nxt = 1
    for i, m in enumerate(masks):
        if m.ndim == 3:  # RGB(A) mask image: any channel set counts
            m = m.max(axis=-1) if m.shape[-1] in (3, 4) else m.max(axis=0)
        if m.shape != labels.shape:
            raise ValueError(f"object mask {i} has shape {m.shape}, expected {labels.shape}")
        fg = (m > threshold) & (labels == 0)
        if fg.any():
            labels[fg] = nxt
            nxt += 1
    return labels


def split_images(
    table,
    method: str = "fraction",
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    group_by: Sequence[str] = ("plate", "well"),
    valid_pattern: str | None = None,
    test_pattern: str | None = None,
):
    """Assign each image (row of ``table``) to ``train``, ``valid`` or ``test``.

    Parameters
    ----------
    table : DataFrame
        Needs ``plate`` and ``image`` (and the ``group_by`` columns for ``fraction``).
    method : {'fraction', 'pattern'}
        ``fraction``: whole groups (default: wells of a plate) are drawn without replacement with
        a seeded generator; at least one group goes to each of test and valid when the fraction is
        > 0 and there are enough groups. ``pattern``: regexes searched in ``'{plate}/{image}'``
        (CELLULAR's filename patterns); test wins over valid; the rest is train.

    Returns
    -------
    Series of split names aligned with ``table``'s index.
    """
    import pandas as pd

    if method == "pattern":
        keys = table["plate"].astype(str) + "/" + table["image"].astype(str)
        split = pd.Series("train", index=table.index)
        if valid_pattern:
            split[keys.str.contains(valid_pattern, regex=True)] = "valid"
        if test_pattern:
            split[keys.str.contains(test_pattern, regex=True)] = "test"
        return split
    if method != "fraction":
        raise ValueError(f"split method must be 'fraction' or 'pattern', not {method!r}")
    if (
        not 0 <= valid_fraction < 1
        or not 0 <= test_fraction < 1
        or valid_fraction + test_fraction >= 1
    ):
        raise ValueError(
            "valid_fraction and test_fraction must be in [0, 1) and sum to less than 1"
        )
    group_by = [g for g in group_by if g in table.columns] or ["plate", "image"]
    groups = table[group_by].astype(str).agg("/".join, axis=1)
    uniq = np.array(sorted(groups.unique()))
    rng = np.random.default_rng(seed)
    order = uniq[rng.permutation(len(uniq))]
    n = len(order)

    def count(frac):
        return 0 if frac <= 0 or n < 3 else max(1, int(round(frac * n)))

    n_test, n_valid = count(test_fraction), count(valid_fraction)
    assign = {g: "test" for g in order[:n_test]}
    assign.update({g: "valid" for g in order[n_test : n_test + n_valid]})
    return groups.map(lambda g: assign.get(g, "train"))


# ---------------------------------------------------------------------------------------------
# Cellpose
# ---------------------------------------------------------------------------------------------
@dataclass
class CellposeTrainParams:
    """Training settings; the defaults are CELLULAR's (Al Outa et al. 2023)."""

    pretrained: str | None = None  # weights file to start from; None = from scratch
    sgd: bool = True
    learning_rate: float = 0.2
    weight_decay: float = 1e-5
    batch_size: int = 8
    n_epochs: int = 500
    rescale: bool = True
    diam_mean: float = 30.0  # from scratch: diameter the network works at (~ object size)
    bsize: int = 224  # training patch size
    nimg_per_epoch: int | None = None
    min_train_masks: int = 5
    seed: int = 0


def train_cellpose(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    save_dir: str | Path,
    model_name: str,
    params: CellposeTrainParams | None = None,
    valid_images: Sequence[np.ndarray] | None = None,
    valid_labels: Sequence[np.ndarray] | None = None,
    device=None,
):
    """Train a Cellpose network; return ``(weights_path, history DataFrame)``.

    ``images`` are prepared inputs ``(2, Y, X)`` (cytoplasm, nucleus) or ``(1, Y, X)``; the
    weights land in ``save_dir/models/model_name`` (Cellpose's convention).
    """
    import pandas as pd
    import torch
    from cellpose import models as cpm
    from cellpose import train as cpt

    params = params or CellposeTrainParams()

    images = [np.asarray(x, dtype=np.float32) for x in images]
    labels = [np.asarray(y).astype(np.int32) for y in labels]
    keep = [i for i, y in enumerate(labels) if len(np.unique(y)) - 1 >= params.min_train_masks]
    if not keep:
        raise ValueError(
            f"no training image has at least min_train_masks={params.min_train_masks} objects "
            f"({len(labels)} images given); lower segmentation.train.cellpose.min_train_masks or add data"
        )
    nchan = 2
    two = images[0].shape[0] == 2
    channels, axis = ([1, 2], 0) if two else ([0, 0], None)

    def fmt(xs):
        return [x if two else x[0] for x in xs]

    np.random.seed(params.seed)
    torch.manual_seed(params.seed)
    # mkldnn=False: Cellpose turns MKL-DNN on for CPUs, which is fine for inference but made a
    # training step ~20x slower here (15 s instead of 0.7 s for 8 patches of 64 px on 2 cores).
    kwargs = {"nchan": nchan, "mkldnn": False}
    if device is not None:
        kwargs["device"] = device
        kwargs["gpu"] = getattr(device, "type", str(device)) != "cpu"
    if params.pretrained:
        model = cpm.CellposeModel(pretrained_model=str(params.pretrained), **kwargs)
    else:
        model = cpm.CellposeModel(
            pretrained_model=False, diam_mean=float(params.diam_mean), **kwargs
        )
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)  # train_seg only creates save_dir/models
    test_kw = {}
    if valid_images is not None and len(valid_images):
        test_kw = {
            "test_data": fmt(list(valid_images)),
            "test_labels": [np.asarray(y).astype(np.int32) for y in valid_labels],
        }
    path, train_losses, test_losses = cpt.train_seg(
        model.net,
        train_data=fmt(images),
        train_labels=labels,
        channels=channels,
        channel_axis=axis,
        normalize=True,
        n_epochs=int(params.n_epochs),
        learning_rate=float(params.learning_rate),
        weight_decay=float(params.weight_decay),
        SGD=bool(params.sgd),
        batch_size=int(params.batch_size),
        rescale=bool(params.rescale),
        bsize=int(params.bsize),
        nimg_per_epoch=params.nimg_per_epoch,
        min_train_masks=int(params.min_train_masks),
        save_path=str(save_dir),
        model_name=model_name,
        **test_kw,
    )
    test = np.asarray(test_losses, dtype=float)
    history = pd.DataFrame(
        {
            "epoch": np.arange(len(train_losses)),
            "train_loss": np.asarray(train_losses, dtype=float),
            # Cellpose computes the validation loss every 10th epoch only; the others are empty.
            "valid_loss": np.where(test > 0, test, np.nan),
        }
    )
    return Path(path), history


# ---------------------------------------------------------------------------------------------
# StarDist
# ---------------------------------------------------------------------------------------------
@dataclass
class StarDistTrainParams:
    """StarDist 2D training settings (small and fast by default; see docs/segmentation.md)."""

    pretrained: str | None = None  # model folder to continue training from; None = from scratch
    n_rays: int = 32
    grid: int = 2
    patch_size: int = 128
    batch_size: int = 4
    epochs: int = 10
    steps_per_epoch: int = 50
    learning_rate: float = 3e-4
    unet_n_depth: int = 3
    unet_n_filter_base: int = 32
    augment: bool = True
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _augmenter(seed: int):
    rng = np.random.default_rng(seed)

    def aug(x, y):
        # Flips and 90-degree rotations keep star-convex shapes star-convex; a mild intensity
        # change makes the model less sensitive to staining differences between plates.
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = np.fliplr(x), np.fliplr(y)
        x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    return aug


def train_stardist(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    basedir: str | Path,
    model_name: str,
    params: StarDistTrainParams | None = None,
    valid_images: Sequence[np.ndarray] | None = None,
    valid_labels: Sequence[np.ndarray] | None = None,
):
    """Train a StarDist2D model on normalised nuclear planes; return ``(model_dir, history)``.

    Without validation images, the last training image is used for validation and threshold
    optimisation (better than none; give a validation split for honest thresholds).
    """
    import pandas as pd
    import tensorflow as tf
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    params = params or StarDistTrainParams()
    X = [np.asarray(x, dtype=np.float32) for x in images]
    Y = [fill_label_holes(np.asarray(y).astype(np.int32)) for y in labels]
    if not X:
        raise ValueError("no training images for StarDist")
    if valid_images is None or not len(valid_images):
        Xv, Yv = X[-1:], Y[-1:]
    else:
        Xv = [np.asarray(x, dtype=np.float32) for x in valid_images]
        Yv = [fill_label_holes(np.asarray(y).astype(np.int32)) for y in valid_labels]
    np.random.seed(params.seed)
    tf.random.set_seed(params.seed)
    ps = int(min(params.patch_size, *X[0].shape))
    ps -= ps % (params.grid * 2**params.unet_n_depth)
    basedir = Path(basedir)
    basedir.mkdir(parents=True, exist_ok=True)
    if params.pretrained:
        src = Path(params.pretrained)
        model = StarDist2D(None, name=src.name, basedir=str(src.parent))
        model.basedir, model.name = basedir, model_name
        model.logdir = basedir / model_name
        model.logdir.mkdir(parents=True, exist_ok=True)
        model.config.train_epochs = int(params.epochs)
        model.config.train_steps_per_epoch = int(params.steps_per_epoch)
        model.config.train_tensorboard = False
        model._update_and_check_config() if hasattr(model, "_update_and_check_config") else None
    else:
        conf = Config2D(
            n_rays=int(params.n_rays),
            grid=(params.grid, params.grid),
            n_channel_in=1,
            train_patch_size=(ps, ps),
            train_batch_size=int(params.batch_size),
            train_epochs=int(params.epochs),
            train_steps_per_epoch=int(params.steps_per_epoch),
            train_learning_rate=float(params.learning_rate),
            unet_n_depth=int(params.unet_n_depth),
            unet_n_filter_base=int(params.unet_n_filter_base),
            # tf.summary needs tensorboard even when logging is off; we plot our own curve.
            train_tensorboard=False,
            **params.extra,
        )
        model = StarDist2D(conf, name=model_name, basedir=str(basedir))
    hist = model.train(
        X,
        Y,
        validation_data=(Xv, Yv),
        augmenter=_augmenter(params.seed) if params.augment else None,
        epochs=int(params.epochs),
        steps_per_epoch=int(params.steps_per_epoch),
    )
    model.optimize_thresholds(Xv, Yv)
    h = getattr(hist, "history", {}) or {}
    history = pd.DataFrame(
        {
            "epoch": np.arange(len(h.get("loss", []))),
            "train_loss": h.get("loss", []),
            "valid_loss": h.get("val_loss", [np.nan] * len(h.get("loss", []))),
        }
    )
    return basedir / model_name, history


def plot_history(history, title: str):
    """Training curve (train and validation loss per epoch) as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(history["epoch"], history["train_loss"], label="train")
    v = history.dropna(subset=["valid_loss"]) if "valid_loss" in history else history.iloc[:0]
    if len(v):
        ax.plot(v["epoch"], v["valid_loss"], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def find_mask_files(template: str, plate: str, image: str, target: str) -> list[str]:
    """Expand a GT mask path template (``{plate}``, ``{image}``, ``{well}``... and ``{target}``).

    A template containing ``*`` names per-object masks (globbed, sorted); otherwise one label image.
    """
    import glob

    row, col, fld = re.match(r"^([A-Za-z]+)-(\d+)-(\d+)$", image).groups()
    path = template.format(
        plate=plate,
        image=image,
        target=target,
        row=row,
        col=int(col),
        field=int(fld),
        well=f"{row}{int(col):02d}",
    )
    if "*" in path:
        return sorted(glob.glob(path))
    return [path]


def load_training_npz(path) -> dict[str, tuple[list, list]]:
    """Read what prepare_seg_training wrote: ``{'train': (images, labels), 'valid': (...)}``."""
    with np.load(path, allow_pickle=False) as z:
        split = list(z["split"])
        out: dict[str, tuple[list, list]] = {s: ([], []) for s in ("train", "valid")}
        for i, s in enumerate(split):
            out[s][0].append(z[f"x_{i}"])
            out[s][1].append(z[f"y_{i}"])
    if not out["train"][0]:
        raise ValueError(
            f"{path}: no training images (every image went to valid/test); check segmentation.train.split"
        )
    return out
