"""Embeddings (pre-logits features) per unit, UMAP maps by class and by plate, and numbers for
plate mixing, so the claim that SupCon with plate-aware batches removes the plate effect is
measured rather than eyeballed:

- ``knn_plate_entropy``: for each unit, the entropy of the plates among its k nearest neighbours
  (cosine), divided by log(number of plates), averaged: 1 = neighbours drawn evenly from all
  plates (mixed), 0 = neighbours all from the unit's own plate (batch effect);
- ``silhouette_plate``: silhouette of the plate labels (cosine): near 0 or below = plates mixed;
- ``silhouette_class`` and ``knn_class_agreement`` (share of the k neighbours of the same class)
  for contrast: classes should separate while plates mix.
Computed within each class too (``class`` column), so a class imbalance across plates does not
pass for a plate effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def unit_embeddings(emb: np.ndarray, sample_unit: np.ndarray, n_units: int) -> np.ndarray:
    """Mean embedding of each unit's samples."""
    out = np.zeros((n_units, emb.shape[1]))
    np.add.at(out, sample_unit, emb)
    return out / np.maximum(np.bincount(sample_unit, minlength=n_units), 1)[:, None]


def embeddings_table(units: pd.DataFrame, emb: np.ndarray) -> pd.DataFrame:
    meta = [c for c in units.columns if c.startswith("Metadata_")]
    out = units[meta].reset_index(drop=True).copy()
    out["split"] = units["split"].to_numpy()
    out["true_class"] = units["class"].astype(object).to_numpy()
    emb_df = pd.DataFrame(emb.astype(np.float32), columns=[f"Emb_{i}" for i in range(emb.shape[1])])
    return pd.concat([out, emb_df], axis=1)


def _normed(emb):
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def knn_label_entropy(emb: np.ndarray, labels, k: int = 15) -> tuple[float, float]:
    """(mean normalised entropy of the labels among each point's k neighbours, mean share of
    neighbours with the point's own label)."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels).astype(str)
    cats = np.unique(labels)
    n = len(labels)
    if n < 3 or len(cats) < 2:
        return float("nan"), float("nan")
    k = min(k, n - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(_normed(emb))
    _, ind = nn.kneighbors(_normed(emb))
    neigh = labels[ind[:, 1:]]
    counts = np.stack([(neigh == c).sum(1) for c in cats], axis=1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(counts > 0, counts * np.log(counts), 0.0), axis=1)
    same = (neigh == labels[:, None]).mean(1)
    return float(np.mean(ent) / np.log(len(cats))), float(np.mean(same))


def silhouette(emb: np.ndarray, labels) -> float:
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels).astype(str)
    if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
        return float("nan")
    return float(silhouette_score(_normed(emb), labels, metric="cosine"))


def mixing_table(emb: np.ndarray, plates, classes, splits, k: int = 15) -> pd.DataFrame:
    """Plate-mixing and class-separation scores, for all units, the training split (the plates
    that plate-aware batches mixed) and the test split, overall and within each class."""
    plates, classes, splits = (np.asarray(a).astype(str) for a in (plates, classes, splits))
    rows = []
    for split in ("all", "train", "test"):
        sel = np.ones(len(plates), bool) if split == "all" else splits == split
        for cls in ["all"] + sorted(np.unique(classes)):
            s = sel & ((classes == cls) if cls != "all" else True)
            if s.sum() < 3:
                continue
            n = int(s.sum())
            ent, _ = knn_label_entropy(emb[s], plates[s], k)
            rows += [
                (split, cls, "knn_plate_entropy", ent, n, k),
                (split, cls, "silhouette_plate", silhouette(emb[s], plates[s]), n, k),
            ]
            if cls == "all":
                _, agree = knn_label_entropy(emb[s], classes[s], k)
                rows += [
                    (split, cls, "knn_class_agreement", agree, n, k),
                    (split, cls, "silhouette_class", silhouette(emb[s], classes[s]), n, k),
                ]
    return pd.DataFrame(rows, columns=["split", "class", "metric", "value", "n_units", "k"])


def umap_2d(
    emb: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1
) -> np.ndarray:
    """Seeded 2-D UMAP (cosine) of the embeddings."""
    import umap

    n = len(emb)
    if n < 4:
        return np.zeros((n, 2))
    reducer = umap.UMAP(
        n_neighbors=min(n_neighbors, n - 1),
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        n_jobs=1,
    )
    return reducer.fit_transform(np.asarray(emb, dtype=np.float32))


def umap_figure(
    xy: np.ndarray, classes, plates, title: str = "", mixing: pd.DataFrame | None = None
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, labels, name in ((axes[0], classes, "class"), (axes[1], plates, "plate")):
        labels = np.asarray(labels).astype(str)
        for j, lab in enumerate(sorted(np.unique(labels))):
            s = labels == lab
            ax.scatter(
                xy[s, 0],
                xy[s, 1],
                s=6,
                alpha=0.7,
                color=plt.cm.tab10(j % 10),
                label=f"{lab} ({s.sum()})",
            )
        ax.set_title(f"coloured by {name}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    if mixing is not None and len(mixing):
        m = mixing[(mixing["split"] == "all") & (mixing["class"] == "all")].set_index("metric")[
            "value"
        ]
        axes[1].set_xlabel(
            f"kNN plate entropy {m.get('knn_plate_entropy', np.nan):.2f}, "
            f"silhouette by plate {m.get('silhouette_plate', np.nan):.2f}"
        )
        axes[0].set_xlabel(
            f"kNN class agreement {m.get('knn_class_agreement', np.nan):.2f}, "
            f"silhouette by class {m.get('silhouette_class', np.nan):.2f}"
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig
