"""Plate-aware batches and the losses (SupCon by hand, cross-entropy on logits)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hcsflow.deep.data import DeepInputError
from hcsflow.deep.losses import DeepLoss, class_weights, supcon_loss
from hcsflow.deep.sampling import PlateAwareSampler, shuffled_batches


def _units(seed=0):
    rng = np.random.default_rng(seed)
    plates = np.repeat(["P1", "P2", "P3", "P4"], 60)
    classes = rng.integers(0, 3, len(plates))
    return classes, plates


def test_every_plate_aware_batch_holds_n_plates_and_n_per_class_of_each_class_per_plate():
    classes, plates = _units()
    s = PlateAwareSampler(classes, plates, n_plates=2, n_per_class=5, seed=1)
    assert s.batch_size == 30  # CellDeathPred: 2 plates x 3 classes x 5
    batches = s.batches(epoch=1)
    assert len(batches) == len(classes) // 30
    seen_plates = set()
    for b in batches:
        assert len(b) == 30
        per_plate = Counter(plates[b])
        assert len(per_plate) == 2
        seen_plates |= set(per_plate)
        for p in per_plate:
            counts = Counter(classes[b][plates[b] == p])
            assert counts == {0: 5, 1: 5, 2: 5}
    assert seen_plates == {"P1", "P2", "P3", "P4"}


def test_plate_aware_batches_are_seeded_per_epoch():
    classes, plates = _units()
    a = PlateAwareSampler(classes, plates, 2, 5, seed=1)
    b = PlateAwareSampler(classes, plates, 2, 5, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.batches(3), b.batches(3), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.batches(3), a.batches(4), strict=True))
    c = PlateAwareSampler(classes, plates, 2, 5, seed=2)
    assert not all(np.array_equal(x, y) for x, y in zip(a.batches(3), c.batches(3), strict=True))


def test_a_plate_lacking_a_class_is_left_out_and_too_few_plates_is_an_error():
    classes, plates = _units()
    classes = classes.copy()
    classes[(plates == "P4") & (classes == 2)] = 1
    s = PlateAwareSampler(classes, plates, 2, 4, seed=0)
    assert s.eligible == ["P1", "P2", "P3"]
    assert all("P4" not in set(plates[b]) for b in s.batches(1))
    with pytest.raises(DeepInputError, match="n_plates"):
        PlateAwareSampler(classes, plates, 4, 4)


def test_shuffled_batches_cover_every_unit_once():
    b = shuffled_batches(10, 4, seed=0, epoch=1, drop_last=False)
    assert sorted(np.concatenate(b).tolist()) == list(range(10))
    assert [len(x) for x in shuffled_batches(10, 4, 0, 1)] == [4, 4]


def _supcon_by_hand(z, labels, t):
    """Khosla et al. (2020) eq. 2 (L_out): mean over anchors with positives."""
    z = [np.asarray(v) / np.linalg.norm(v) for v in z]
    n, total, anchors = len(z), 0.0, 0
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(np.dot(z[i], z[a]) / t) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(np.dot(z[i], z[p]) / t) / denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_supcon_equals_a_hand_computation():
    z = [[1.0, 0.0], [0.8, 0.6], [0.0, 2.0], [-1.0, 1.0], [0.3, -0.2]]
    labels = [0, 0, 1, 1, 0]
    for t in (0.1, 0.5):
        got = supcon_loss(torch.tensor(z), torch.tensor(labels), temperature=t)
        assert float(got) == pytest.approx(_supcon_by_hand(z, labels, t), rel=1e-5)


def test_supcon_ce_adds_the_weighted_parts():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.2], [-1.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    total, parts = DeepLoss("supcon_ce", ce_weight=0.3, supcon_weight=0.7, temperature=0.1)(
        logits, emb, y
    )
    want = 0.3 * F.cross_entropy(logits, y) + 0.7 * supcon_loss(emb, y, 0.1)
    assert float(total) == pytest.approx(float(want), rel=1e-6)
    assert set(parts) == {"ce", "supcon"}


def test_cross_entropy_is_computed_on_logits_not_on_probabilities():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    y = torch.tensor([0, 1])
    loss, _ = DeepLoss("ce")(logits, None, y)
    assert float(loss) < 1e-6  # confident and right: ~0
    # softmax before CE (the nucleocentric bug) could never go below log(1 + e^-1) = 0.313
    assert float(F.cross_entropy(torch.softmax(logits, 1), y)) == pytest.approx(
        math.log(1 + math.exp(-1)), rel=1e-4
    )
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y)))


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 6, 2.0, 0.0])
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])
    loss, _ = DeepLoss("ce", weights=w)(logits, None, y)
    assert float(loss) == pytest.approx(
        float(F.cross_entropy(logits, y, weight=torch.tensor(w, dtype=torch.float32)))
    )


def test_batch_composition_records_plates_and_classes_of_each_batch():
    from hcsflow.deep.sampling import batch_composition, composition_summary

    classes, plates = _units()
    names = np.array(["healthy", "apoptosis", "ferroptosis"])
    s = PlateAwareSampler(classes, plates, n_plates=2, n_per_class=5, seed=1)
    comps = batch_composition(s.batches(epoch=1), plates, names[classes])
    assert len(comps) == len(s)
    assert all(
        len(c) == 2 and all(v == {n: 5 for n in sorted(names)} for v in c.values()) for c in comps
    )
    summary = composition_summary(comps, names)
    assert summary == {
        "batches": len(s),
        "plates_per_batch": [2, 2],
        "units_per_plate_and_class": [5, 5],
        "batch_size": [30, 30],
    }
    # a hand-made batch: 2 x P1/healthy, 1 x P2/apoptosis -> the missing (plate, class) cells are 0
    comp = batch_composition([np.array([0, 1, 2])], ["P1", "P1", "P2"], ["h", "h", "a"])
    assert comp == [{"P1": {"h": 2}, "P2": {"a": 1}}]
    assert composition_summary(comp, ["h", "a"])["units_per_plate_and_class"] == [0, 2]
