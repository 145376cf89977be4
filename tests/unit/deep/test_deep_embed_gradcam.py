"""Plate-mixing numbers on embeddings with a known answer, and GradCAM maps for a CNN and a ViT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hcsflow.deep.embed import embeddings_table, knn_label_entropy, mixing_table, unit_embeddings
from hcsflow.deep.gradcam import composite, compute_cams, montage_figure, pick_units
from hcsflow.deep.models import create_model

torch.set_num_threads(1)


def _clusters(mixed: bool, seed=0):
    """Two classes along axis 0; plates either a separate axis-1 offset (batch effect) or none."""
    rng = np.random.default_rng(seed)
    n = 80
    cls = np.arange(n) % 2
    plate = (np.arange(n) // 2) % 2
    emb = np.zeros((n, 3))
    emb[:, 0] = np.where(cls == 1, 5, -5)
    emb[:, 2] = 10
    emb[:, 1] = 0 if mixed else np.where(plate == 1, 5, -5)
    emb += rng.normal(0, 0.5, emb.shape)
    return emb, cls.astype(str), np.where(plate == 1, "P2", "P1")


def test_knn_plate_entropy_is_one_when_plates_mix_and_zero_when_they_separate():
    emb, cls, plates = _clusters(mixed=False)
    ent, same = knn_label_entropy(emb, plates, k=10)
    assert ent < 0.05 and same > 0.99
    emb, cls, plates = _clusters(mixed=True)
    ent, _ = knn_label_entropy(emb, plates, k=10)
    assert ent > 0.85


def test_mixing_table_reports_plates_and_classes_per_split_and_class():
    emb, cls, plates = _clusters(mixed=False)
    splits = np.where(np.arange(len(cls)) < 40, "train", "test")
    t = mixing_table(emb, plates, cls, splits, k=10)
    allrows = t[(t["split"] == "all") & (t["class"] == "all")].set_index("metric")["value"]
    assert allrows["silhouette_plate"] > 0.3 and allrows["knn_class_agreement"] > 0.99
    assert set(t["split"]) == {"all", "train", "test"} and {"0", "1"} <= set(t["class"])
    assert (t.loc[t["split"] == "train", "n_units"] <= 40).all()
    assert (t.loc[t["split"] == "test", "n_units"] <= 40).all()
    mixed = mixing_table(*_clusters(mixed=True)[:1], _clusters(mixed=True)[2], cls, splits, k=10)
    m = mixed[(mixed["split"] == "all") & (mixed["class"] == "all")].set_index("metric")["value"]
    assert m["knn_plate_entropy"] > allrows["knn_plate_entropy"] + 0.5
    assert abs(m["silhouette_plate"]) < 0.1


def test_unit_embeddings_average_the_samples_of_a_unit():
    emb = np.array([[1.0, 0], [3, 0], [0, 2]])
    np.testing.assert_allclose(unit_embeddings(emb, np.array([0, 0, 1]), 2), [[2, 0], [0, 2]])
    units = pd.DataFrame(
        {"Metadata_Plate": ["P", "P"], "split": ["train", "test"], "class": ["a", "b"]}
    )
    t = embeddings_table(units, np.ones((2, 3)))
    assert list(t.columns) == ["Metadata_Plate", "split", "true_class", "Emb_0", "Emb_1", "Emb_2"]


@pytest.mark.parametrize("arch", ["resnet10t", "vit_tiny_patch16_224"])
def test_gradcam_maps_for_a_cnn_and_a_vit(arch):
    torch.manual_seed(0)
    m = create_model(arch, 4, 2, 32).eval()
    x = torch.rand(2, 4, 32, 32)
    x[:, :, 8:16, 20:28] += 3  # a bright patch the (untrained) model reacts to
    cams = np.concatenate([compute_cams(m, x, [0, 0]), compute_cams(m, x, [1, 1])])
    assert cams.shape == (4, 32, 32) and np.isfinite(cams).all()
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert max(c.max() for c in cams) > 0  # some class has positive evidence somewhere


def test_composite_and_montage():
    x = np.zeros((2, 8, 8))
    x[0, :4] = 1  # first channel blue
    x[1, 4:] = 1  # second green
    rgb = composite(x)
    assert rgb.shape == (8, 8, 3)
    assert rgb[0, 0].tolist() == [0, 0, 1] and rgb[7, 0].tolist() == [0, 1, 0]
    preds = pd.DataFrame(
        {
            "true_class": ["a", "a", "b", "b", "b"],
            "pred_class": ["a", "b", "b", "b", "b"],
            "split": ["test", "train", "test", "test", "test"],
            "confidence": 0.9,
        }
    )
    picked = pick_units(preds, ["a", "b"], 2, seed=0)
    assert picked["true_class"].tolist() == ["a", "a", "b", "b"]
    assert picked["split"].tolist()[0] == "test"  # the test split first
    fig = montage_figure(
        np.random.rand(4, 2, 8, 8),
        np.random.rand(4, 8, 8).astype(np.float32),
        picked,
        ["a", "b"],
        2,
    )
    assert len(fig.axes) == 8


def test_knn_plate_entropy_known_values_on_a_line_of_points():
    """Six points in order on a short arc (cosine distances keep the order), k = 2:
    plates A A B B A A -> every point has one A and one B neighbour: entropy exactly 1, own-plate
    share 1/2; plates A A A B B B -> only the two middle points have mixed neighbours: entropy
    2/6, own-plate share (1 + 1 + 0.5 + 0.5 + 1 + 1) / 6."""
    angles = np.deg2rad(np.arange(6) * 2.0)
    emb = np.column_stack([np.cos(angles), np.sin(angles)])
    ent, same = knn_label_entropy(emb, list("AABBAA"), k=2)
    assert ent == pytest.approx(1.0) and same == pytest.approx(0.5)
    ent, same = knn_label_entropy(emb, list("AAABBB"), k=2)
    assert ent == pytest.approx(2 / 6) and same == pytest.approx(5 / 6)
