"""Losses: cross-entropy on logits (never on softmax output: the nucleocentric CNN applied a
softmax before ``CrossEntropyLoss``, which squashes the gradients), optionally class-weighted;
and supervised contrastive loss (pytorch-metric-learning ``SupConLoss``) on L2-normalised
embeddings plus cross-entropy, with configurable weights (CellDeathPred: 0.5 / 0.5, T = 0.1)."""

from __future__ import annotations

import numpy as np

LOSSES = ("ce", "supcon_ce")


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (k * n_c)`` (sklearn's 'balanced'); 0 for absent classes."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=n_classes).astype(float)
    w = np.zeros(n_classes)
    nz = counts > 0
    w[nz] = counts.sum() / (nz.sum() * counts[nz])
    return w


def supcon_loss(embeddings, labels, temperature: float = 0.1):
    """SupCon (Khosla et al. 2020) of a batch, via pytorch-metric-learning, on L2-normalised
    embeddings."""
    import torch.nn.functional as F
    from pytorch_metric_learning.losses import SupConLoss

    return SupConLoss(temperature=temperature)(F.normalize(embeddings, dim=1), labels)


class DeepLoss:
    """``loss(logits, embeddings, labels) -> (total, {part: value})``."""

    def __init__(
        self,
        kind: str = "ce",
        weights=None,
        ce_weight: float = 1.0,
        supcon_weight: float = 0.0,
        temperature: float = 0.1,
    ):
        import torch

        if kind not in LOSSES:
            raise ValueError(f"loss {kind!r} is unknown; choose one of {', '.join(LOSSES)}")
        self.kind = kind
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.ce_weight = float(ce_weight) if kind == "supcon_ce" else 1.0
        self.supcon_weight = float(supcon_weight) if kind == "supcon_ce" else 0.0
        self.temperature = float(temperature)

    def __call__(self, logits, embeddings, labels):
        import torch.nn.functional as F

        w = None if self.weights is None else self.weights.to(logits.device)
        ce = F.cross_entropy(logits, labels, weight=w)
        parts = {"ce": float(ce.detach())}
        total = self.ce_weight * ce
        if self.supcon_weight:
            sc = supcon_loss(embeddings, labels, self.temperature)
            parts["supcon"] = float(sc.detach())
            total = total + self.supcon_weight * sc
        return total, parts
