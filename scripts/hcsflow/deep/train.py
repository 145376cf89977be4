"""Seeded, resumable training of one deep model, and the units -> model -> predictions pipeline.

- Deterministic on the CPU: every epoch's batches, augmentations and dropout come from
  ``(seed, epoch)``, so a run resumed from its checkpoint after epoch k redoes epochs k+1.. exactly
  as an uninterrupted run would.
- Validation each epoch (never augmented), ``ReduceLROnPlateau`` on the monitored metric, early
  stopping after ``patience`` epochs without improvement.
- The best weights are a deep copy taken when the metric improves (the nucleocentric CNN kept a
  reference to ``model.state_dict()``, so its "best" was the last epoch).
- A checkpoint after every epoch (model, optimiser, scheduler, best weights, history) in a folder
  OUTSIDE the rule's declared outputs (``results/.checkpoints/{model}/``), so a job killed by a
  time limit resumes where it stopped when the workflow is rerun; it is removed when done.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import DeepInputError, Normaliser, Transform
from .losses import DeepLoss, class_weights
from .models import create_model, forward, freeze_batchnorm
from .sampling import (
    PlateAwareSampler,
    batch_composition,
    composition_summary,
    epoch_rng,
    shuffled_batches,
)

LOG = logging.getLogger("hcsflow.deep")
MONITORS = {"valid_loss": "min", "valid_accuracy": "max", "valid_balanced_accuracy": "max"}


@dataclass
class TrainSettings:
    epochs: int = 50
    lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 10
    monitor: str = "valid_loss"
    scheduler_factor: float = 0.5
    scheduler_patience: int = 3
    batch_size: int = 32
    plate_aware: bool = False
    n_plates: int = 2
    n_per_class: int = 5
    batches_per_epoch: int | None = None
    freeze_bn: bool = False
    augment: dict | None = field(default_factory=dict)
    seed: int = 0
    eval_batch_size: int = 256

    @classmethod
    def from_config(cls, cfg: dict) -> TrainSettings:
        batch = cfg.get("batch", {}) or {}
        aug = cfg.get("augment", {})
        return cls(
            epochs=cfg.get("epochs", 50),
            lr=cfg.get("lr", 1e-4),
            weight_decay=cfg.get("weight_decay", 1e-4),
            patience=cfg.get("patience", 10),
            monitor=cfg.get("monitor", "valid_loss"),
            scheduler_factor=(cfg.get("scheduler") or {}).get("factor", 0.5),
            scheduler_patience=(cfg.get("scheduler") or {}).get("patience", 3),
            batch_size=batch.get("size", 32),
            plate_aware=batch.get("plate_aware", False),
            n_plates=batch.get("n_plates", 2),
            n_per_class=batch.get("n_per_class", 5),
            batches_per_epoch=batch.get("per_epoch"),
            freeze_bn=cfg.get("freeze_bn", False),
            augment=(
                None
                if aug is False or (isinstance(aug, dict) and aug.get("enabled") is False)
                else {k: v for k, v in (aug or {}).items() if k != "enabled"}
            ),
            seed=cfg.get("seed", 0),
        )


def set_determinism(seed: int, threads: int | None = None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def predict_logits(model, raw, index, transform: Transform, device=None, batch_size: int = 256):
    """Logits and embeddings of ``raw[index]`` in eval mode, in batches, never augmented."""
    import torch

    model.eval()
    index = np.asarray(index)
    logits, embs = [], []
    with torch.no_grad():
        for i in range(0, len(index), batch_size):
            x = transform(raw, index[i : i + batch_size], device=device)
            lg, em = forward(model, x)
            logits.append(lg.float().cpu().numpy())
            embs.append(em.float().cpu().numpy())
    if not logits:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(logits), np.concatenate(embs)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _metrics(logits: np.ndarray, y: np.ndarray) -> dict:
    if len(y) == 0:
        return {"valid_loss": np.nan, "valid_accuracy": np.nan, "valid_balanced_accuracy": np.nan}
    p = softmax(logits)
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))
    pred = p.argmax(1)
    recalls = [np.mean(pred[y == c] == c) for c in np.unique(y)]
    return {
        "valid_loss": loss,
        "valid_accuracy": float(np.mean(pred == y)),
        "valid_balanced_accuracy": float(np.mean(recalls)),
    }


def _save_atomic(obj, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    model,
    loss_fn: DeepLoss,
    raw,
    y,
    train_idx,
    valid_idx,
    transform: Transform,
    settings: TrainSettings,
    *,
    train_plates=None,
    valid_y=None,
    device=None,
    checkpoint_dir=None,
    fingerprint: str = "",
    log=None,
    on_epoch_end=None,
    class_names=None,
    calibrate_bn: bool = False,
) -> dict:
    """Train ``model`` on ``raw[train_idx]`` (labels ``y[train_idx]``), validate on
    ``raw[valid_idx]``. Returns ``{'best_state', 'best_epoch', 'history', 'last_state'}``.

    ``checkpoint_dir``: where ``last.pt`` is written after every epoch and resumed from (when its
    fingerprint matches). ``on_epoch_end(epoch)`` is called after the checkpoint is written.
    ``calibrate_bn`` (with ``settings.freeze_bn``): before the first epoch, set the batch-norm
    statistics from training batches (:func:`calibrate_batchnorm`); a randomly initialised
    network's are mean 0 / variance 1, so frozen they would normalise nothing.
    The result's ``batches`` records what the batches held (by plate and class; needs
    ``train_plates``): the first epoch's batches in full and a summary over every epoch.
    """
    import torch

    log = log or LOG
    device = device or torch.device("cpu")
    y = np.asarray(y, dtype=np.int64)
    train_idx, valid_idx = np.asarray(train_idx), np.asarray(valid_idx)
    s = settings
    monitor = s.monitor if len(valid_idx) else "train_loss"
    if monitor not in MONITORS and monitor != "train_loss":
        raise DeepInputError(f"monitor {s.monitor!r} is unknown; choose one of {list(MONITORS)}")
    if not len(valid_idx):
        log.warning("no validation units: early stopping and the best epoch use the training loss")
    mode = MONITORS.get(monitor, "min")
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=s.scheduler_factor, patience=s.scheduler_patience
    )
    if s.plate_aware:
        sampler = PlateAwareSampler(
            y[train_idx],
            train_plates,
            s.n_plates,
            s.n_per_class,
            seed=s.seed,
            n_batches=s.batches_per_epoch,
            log=log,
        )
        batches_of = sampler.batches
        log.info(
            "plate-aware batches: %d plates x %d classes x %d units = %d per batch, %d per epoch",
            s.n_plates,
            len(sampler.class_ids),
            s.n_per_class,
            sampler.batch_size,
            len(sampler),
        )
    else:

        def batches_of(epoch):
            b = shuffled_batches(len(train_idx), s.batch_size, s.seed, epoch)
            k = 1  # more batches than one pass holds: further seeded passes (as plate-aware does)
            while s.batches_per_epoch and len(b) < s.batches_per_epoch:
                b = b + shuffled_batches(len(train_idx), s.batch_size, s.seed + 7919 * k, epoch)
                k += 1
            return b[: s.batches_per_epoch] if s.batches_per_epoch else b

    ck_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    state = {
        "epoch": 0,
        "history": [],
        "best_state": None,
        "best_score": None,
        "best_epoch": 0,
        "bad": 0,
        "stopped": False,
        "batches": {"first_epoch": [], "summary": {}},
    }
    if ck_path is not None and ck_path.is_file():
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        if ck.get("fingerprint") == fingerprint:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            state = ck["state"]
            log.info("resuming from %s after epoch %d", ck_path, state["epoch"])
        else:
            log.warning("ignoring checkpoint %s: it belongs to other settings or data", ck_path)
    valid_y = y[valid_idx] if valid_y is None else np.asarray(valid_y)
    if s.freeze_bn and calibrate_bn and state["epoch"] == 0:
        n = calibrate_batchnorm(model, raw, train_idx, transform, s, device)
        log.info(
            "batch norm: statistics of %d layers set from %d training samples, then frozen",
            n,
            min(len(train_idx), 8 * s.eval_batch_size),
        )

    for epoch in range(state["epoch"] + 1, s.epochs + 1):
        if state["stopped"]:
            break
        t0 = time.perf_counter()
        torch.manual_seed(s.seed * 100003 + epoch)
        gen = torch.Generator().manual_seed(s.seed * 100003 + epoch)
        model.train()
        if s.freeze_bn:
            freeze_batchnorm(model)
        sums, n_seen = {}, 0
        epoch_batches = batches_of(epoch)
        _record_batches(state, epoch, epoch_batches, train_idx, y, train_plates, class_names)
        for b in epoch_batches:
            idx = train_idx[b]
            x = transform(raw, idx, device=device, gen=gen, augment=s.augment)
            yb = torch.as_tensor(y[idx], device=device)
            logits, emb = forward(model, x)
            loss, parts = loss_fn(logits, emb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            n_seen += len(idx)
        row = {"epoch": epoch, **{f"train_{k}": v / max(n_seen, 1) for k, v in sums.items()}}
        lg, _ = predict_logits(model, raw, valid_idx, transform, device, s.eval_batch_size)
        row.update(_metrics(lg, valid_y))
        score = row[monitor]
        sched.step(score)
        row["lr"] = opt.param_groups[0]["lr"]
        best = state["best_score"]
        improved = best is None or (score < best if mode == "min" else score > best)
        if improved:
            state.update(
                best_score=score,
                best_epoch=epoch,
                bad=0,
                best_state={
                    k: v.detach().cpu().clone()
                    for k, v in copy.deepcopy(model.state_dict()).items()
                },
            )
        else:
            state["bad"] += 1
        row["seconds"] = round(time.perf_counter() - t0, 3)
        state["history"].append(row)
        state["epoch"] = epoch
        log.info(
            "epoch %d/%d: train loss %.4f, valid loss %.4f, valid accuracy %.3f, lr %.2g, %.1f s%s",
            epoch,
            s.epochs,
            row.get("train_loss", np.nan),
            row["valid_loss"],
            row["valid_accuracy"],
            row["lr"],
            row["seconds"],
            " (best)" if improved else "",
        )
        if state["bad"] >= s.patience:
            log.info(
                "early stop: %s did not improve for %d epochs (best epoch %d)",
                monitor,
                s.patience,
                state["best_epoch"],
            )
            state["stopped"] = True
        if ck_path is not None:
            _save_atomic(
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "state": state,
                },
                ck_path,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    history = pd.DataFrame(state["history"])
    return {
        "best_state": state["best_state"],
        "best_epoch": state["best_epoch"],
        "history": history,
        "last_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "monitor": monitor,
        "batches": {
            "plate_aware": bool(s.plate_aware),
            **({"n_plates": s.n_plates, "n_per_class": s.n_per_class} if s.plate_aware else {}),
            **state.get("batches", {}),
        },
    }


def calibrate_batchnorm(
    model, raw, train_idx, transform, settings, device=None, max_samples: int | None = None
) -> int:
    """Set every batch-norm layer's running mean / variance to the statistics of (up to
    ``max_samples``) training samples, not augmented, in a seeded order; returns the number of
    layers. Used before freezing batch norm in a network without pretrained weights."""
    import torch.nn as nn
    from torch.optim.swa_utils import update_bn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not len(train_idx):
        return 0
    max_samples = max_samples or 8 * settings.eval_batch_size
    order = np.asarray(train_idx)[epoch_rng(settings.seed, 0, 7).permutation(len(train_idx))]
    order = order[:max_samples]
    bs = max(2, min(settings.batch_size, 64))
    chunks = (order[i : i + bs] for i in range(0, len(order), bs))
    # torch's own: reset the statistics, cumulative average over the batches, mode restored
    update_bn((transform(raw, c, device=device) for c in chunks if len(c) >= 2), model)
    return len(bns)


def _record_batches(state, epoch, batches, train_idx, y, train_plates, class_names) -> None:
    """Add an epoch's batch composition to ``state['batches']`` (kept in the checkpoint)."""
    if train_plates is None:
        return
    names = np.asarray(class_names if class_names is not None else sorted(set(y.tolist())))
    classes = names[y[train_idx]] if class_names is not None else y[train_idx]
    comps = batch_composition(batches, train_plates, classes)
    summ = composition_summary(comps, [str(c) for c in names])
    rec = state.setdefault("batches", {"first_epoch": [], "summary": {}})
    if epoch == 1 or not rec["first_epoch"]:
        rec["first_epoch"] = comps
    old = rec.get("summary") or {}
    if old.get("batches"):
        for k in ("plates_per_batch", "units_per_plate_and_class", "batch_size"):
            summ[k] = [min(old[k][0], summ[k][0]), max(old[k][1], summ[k][1])]
        summ["batches"] += old["batches"]
    summ["epochs"] = epoch
    rec["summary"] = summ


# ---- units -> model -> predictions ------------------------------------------------------------
def fingerprint_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_classes(units: pd.DataFrame, classes: list[str]) -> None:
    """Every class needs training units (split train, sampled)."""
    train = units[(units["split"] == "train") & units["sampled"].astype(bool)]
    counts = train["class"].value_counts()
    empty = [c for c in classes if counts.get(c, 0) == 0]
    if empty:
        raise DeepInputError(
            f"class(es) {empty} have no training units in results/classify/units.parquet "
            f"(training counts: {counts.to_dict()}); add wells of that class to the plates, "
            f"change classify.split, or remove the class from classify.classes"
        )
    unknown = sorted(set(units["class"].astype(str)) - set(classes))
    if unknown:
        raise DeepInputError(
            f"units have classes {unknown} that are not in the class list {classes}"
        )


def fit_from_units(
    units: pd.DataFrame,
    classes: list[str],
    cfg: dict,
    raw: np.ndarray,
    sample_unit: np.ndarray,
    channel_names: list[str],
    *,
    name: str = "model",
    device=None,
    checkpoint_dir=None,
    log=None,
    on_epoch_end=None,
) -> dict:
    """Train the model of ``cfg`` (one ``deep.models`` entry) on the units' images.

    ``raw[i]`` belongs to unit ``sample_unit[i]`` (several samples per unit for tiled fields).
    Returns ``{'state', 'spec', 'predictions', 'history', 'normaliser', 'model'}``.
    """

    log = log or LOG
    units = units.reset_index(drop=True)
    classes = [str(c) for c in classes]
    check_classes(units, classes)
    settings = TrainSettings.from_config(cfg)
    set_determinism(settings.seed)
    cls_index = {c: i for i, c in enumerate(classes)}
    unit_y = units["class"].astype(str).map(cls_index).to_numpy()
    sample_unit = np.asarray(sample_unit)
    y = unit_y[sample_unit]
    is_train = ((units["split"] == "train") & units["sampled"].astype(bool)).to_numpy()[sample_unit]
    is_valid = (units["split"] == "valid").to_numpy()[sample_unit]
    train_idx, valid_idx = np.flatnonzero(is_train), np.flatnonzero(is_valid)
    log.info(
        "%d training and %d validation samples of %d units; classes %s",
        len(train_idx),
        len(valid_idx),
        len(units),
        classes,
    )
    norm_cfg = cfg.get("normalisation", {}) or {}
    normaliser = Normaliser(
        norm_cfg.get("method", "percentile"),
        norm_cfg.get("low", 0.1),
        norm_cfg.get("high", 99.9),
        per_image=norm_cfg.get("per_image", False),
    ).fit(raw, train_idx, seed=settings.seed)
    image_size = int(cfg.get("image_size", 64))
    transform = Transform(normaliser, image_size)
    pretrained = cfg.get("pretrained")
    model = create_model(
        cfg["architecture"],
        len(channel_names),
        len(classes),
        image_size,
        pretrained=pretrained,
        drop_rate=cfg.get("drop_rate", 0.0),
    )
    if pretrained:
        log.info("backbone weights from %s (new %d-class head)", pretrained, len(classes))
    weights = class_weights(y[train_idx], len(classes)) if cfg.get("class_weights", False) else None
    loss_cfg = cfg.get("loss", "ce")
    loss_fn = DeepLoss(
        loss_cfg,
        weights=weights,
        ce_weight=cfg.get("ce_weight", 0.5),
        supcon_weight=cfg.get("supcon_weight", 0.5),
        temperature=cfg.get("temperature", 0.1),
    )
    plates = units["Metadata_Plate"].astype(str).to_numpy()[sample_unit]
    fp = fingerprint_of(
        name,
        cfg,
        classes,
        channel_names,
        len(raw),
        int(raw[:64].sum()),
        train_idx.tolist()[:200],
        len(train_idx),
        len(valid_idx),
    )
    result = train(
        model,
        loss_fn,
        raw,
        y,
        train_idx,
        valid_idx,
        transform,
        settings,
        train_plates=plates[train_idx],
        device=device,
        checkpoint_dir=checkpoint_dir,
        fingerprint=fp,
        log=log,
        on_epoch_end=on_epoch_end,
        class_names=classes,
        calibrate_bn=not pretrained,
    )
    model.load_state_dict(result["best_state"])
    log.info(
        "best epoch %d of %d (%s)", result["best_epoch"], len(result["history"]), result["monitor"]
    )
    logits, _ = predict_logits(
        model, raw, np.arange(len(raw)), transform, device, settings.eval_batch_size
    )
    probs = average_by_unit(softmax(logits), sample_unit, len(units))
    spec = model_spec(
        name,
        cfg,
        classes,
        channel_names,
        normaliser,
        unit="cell" if "Metadata_ObjectNumber" in units.columns else "field",
    )
    spec["best_epoch"] = int(result["best_epoch"])
    spec["batches"] = result["batches"]
    log.info("training batches (plates x classes): %s", result["batches"].get("summary"))
    preds = predictions_table(units, probs, classes)
    return {
        "state": result["best_state"],
        "spec": spec,
        "predictions": preds,
        "history": result["history"],
        "normaliser": normaliser,
        "model": model,
        "transform": transform,
    }


def average_by_unit(probs: np.ndarray, sample_unit: np.ndarray, n_units: int) -> np.ndarray:
    """Mean probabilities of each unit's samples (tiles of a field; one sample per crop)."""
    out = np.zeros((n_units, probs.shape[1]))
    np.add.at(out, sample_unit, probs)
    counts = np.bincount(sample_unit, minlength=n_units)[:, None]
    return out / np.maximum(counts, 1)


def predictions_table(units: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The predictions contract: Metadata_ columns, split, true_class, pred_class, confidence,
    Prob_{class} (rows sum to 1)."""
    meta = [c for c in units.columns if c.startswith("Metadata_")]
    out = units[meta].reset_index(drop=True).copy()
    out["split"] = units["split"].to_numpy() if "split" in units else "predict"
    out["true_class"] = units["class"].astype(object).to_numpy() if "class" in units else None
    best = probs.argmax(1)
    out["pred_class"] = np.asarray(classes, dtype=object)[best]
    out["confidence"] = probs.max(1)
    for j, c in enumerate(classes):
        out[f"Prob_{c}"] = probs[:, j]
    return out


def model_spec(
    name: str, cfg: dict, classes, channels, normaliser: Normaliser, unit: str = "cell"
) -> dict:
    """What model.json holds: everything prediction needs."""
    import timm
    import torch

    field_cfg = cfg.get("field", {}) or {}
    return {
        "kind": "torch",
        "name": name,
        "classes": list(classes),
        "unit": unit,
        "channels": list(channels),
        "in_chans": len(channels),
        "architecture": cfg["architecture"],
        "input": cfg.get("input", "nucleocentric"),
        "image_size": int(cfg.get("image_size", 64)),
        "normalisation": normaliser.to_dict(),
        "field": {
            "mode": field_cfg.get("mode", "resize"),
            "n_tiles": field_cfg.get("n_tiles", 5),
            "tile_size": field_cfg.get("tile_size"),
        },
        "loss": cfg.get("loss", "ce"),
        "seed": cfg.get("seed", 0),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
    }


def remove_checkpoints(checkpoint_dir) -> None:
    if checkpoint_dir and Path(checkpoint_dir).exists():
        shutil.rmtree(checkpoint_dir)


def history_figure(history: pd.DataFrame, title: str = ""):
    """Learning curves: losses and validation accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for col in [c for c in history.columns if c.startswith("train_") or c == "valid_loss"]:
        axes[0].plot(history["epoch"], history[col], marker="o", ms=3, label=col)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=7)
    for col in ("valid_accuracy", "valid_balanced_accuracy"):
        if col in history:
            axes[1].plot(history["epoch"], history[col], marker="o", ms=3, label=col)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation")
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
