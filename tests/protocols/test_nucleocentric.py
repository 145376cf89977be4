"""Nucleocentric protocol end to end, as its users run it, on the co-culture scenario.

config/test/nucleocentric.yaml (run as committed, relative paths, in a scratch folder exactly like
``snakemake --cores 2 --configfile config/test/nucleocentric.yaml --directory runs/nucleocentric``):
Cellpose (cells) and StarDist (nuclei) trained from scratch on the scenario's true masks and used
to segment every image, GT stains aligned to the Cell Painting frame, GT thresholds suggested from
the monoculture wells, nucleocentric crops and handcrafted features, then a Random Forest on the
features and a ResNet on the crops, split by whole wells and evaluated on the held-out wells.

The demo's truth (``demo_data/truth``: true masks, true class per cell, true GT shifts) is only
read here, by the test, never by the workflow's classification.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import figure, run_protocol
from hcsflow.io import per_image_file

pytestmark = [pytest.mark.protocol, pytest.mark.workflow]

CLASSES = ["astro", "SHSY5Y"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_protocol(tmp_path_factory, "nucleocentric")


def _test_metric(run, model: str, level: str, metric: str = "accuracy") -> tuple[float, int]:
    m = pd.read_csv(run / f"results/classify/{model}/metrics.tsv", sep="\t")
    row = m[(m["level"] == level) & (m["split"] == "test") & (m["metric"] == metric)]
    assert len(row) == 1, (model, level, metric, m)
    return float(row["value"].iloc[0]), int(row["n"].iloc[0])


def _match_truth(seg: np.ndarray, truth: np.ndarray) -> dict[int, tuple[int, float]]:
    """Segmented label -> (true label with the largest overlap, IoU with it)."""
    out = {}
    for lab in np.unique(seg):
        if lab == 0:
            continue
        inside = seg == lab
        labels, counts = np.unique(truth[inside], return_counts=True)
        best = int(labels[np.argmax(counts)])
        if best == 0:
            out[int(lab)] = (0, 0.0)
            continue
        iou = counts.max() / np.logical_or(inside, truth == best).sum()
        out[int(lab)] = (best, float(iou))
    return out


def test_cellpose_and_stardist_trained_here_segment_held_out_wells(run):
    models = run / "results/segmentation/models"
    assert (models / "cellpose/hcsflow_cells").stat().st_size > 1e6
    assert any((models / "stardist/hcsflow_nuclei").glob("weights_*.h5"))
    summary = pd.read_csv(run / "results/segmentation/eval/summary.tsv", sep="\t")
    print(summary.to_string())
    ap = summary.set_index("target")["ap@0.5"]
    for target in ("cells", "nuclei"):
        figure("nucleocentric", f"{target}_ap@0.5", ap[target])
    # over training seeds 0-4 (docs/benchmarks.md): Cellpose 0.94-0.99; StarDist at 10 x 40 steps 0.985-1.000 (at 5 x 40
    # steps it was 0.985 / 0.920 / 0.606 for seeds 0 / 1 / 2: one draw is not a schedule)
    assert ap["cells"] >= 0.7 and ap["nuclei"] >= 0.7


def test_gt_alignment_recovers_the_true_shifts(run):
    truth = pd.read_csv(run / "demo_data/truth/shifts.tsv", sep="\t")
    errors = []
    for t in truth.itertuples():
        shifts = pd.read_parquet(
            per_image_file(run / "results", t.plate, t.image, "aligned", ".shift.parquet")
        )
        got = shifts[["shift_y", "shift_x"]].drop_duplicates()
        assert len(got) == 1, (t.plate, t.image)  # one shift per image
        errors.append(max(abs(got["shift_y"].iloc[0] - t.dy), abs(got["shift_x"].iloc[0] - t.dx)))
    print(f"GT alignment: {len(truth)} images, largest error {max(errors)} px")
    assert max(errors) <= 1


def test_thresholds_from_monocultures_and_labels_agree_with_truth(run):
    thr = pd.read_csv(run / "results/labels_thresholds.tsv", sep="\t").set_index("marker")
    assert set(thr.index) == {"EdU", "BrdU"}
    labels = pd.read_parquet(run / "results/labels.parquet")
    truth = pd.read_csv(run / "demo_data/truth/cells.tsv", sep="\t")
    truth = truth.set_index(["plate", "image", "label"])["cls"]
    n = right = 0
    for (plate, image), cells in labels.groupby(["Metadata_Plate", "Metadata_Image"]):
        seg = tifffile.imread(per_image_file(run / "results", plate, image, "masks/cells", ".tif"))
        true = tifffile.imread(run / f"demo_data/truth/{plate}/{image}.cells.tif")
        match = _match_truth(seg, true)
        for cell in cells.itertuples():
            best, iou = match.get(int(cell.Metadata_ObjectNumber), (0, 0.0))
            if cell.gt_class not in CLASSES or iou <= 0.5:
                continue
            n += 1
            right += truth[(plate, image, best)] == cell.gt_class
    called = labels["gt_class"].isin(CLASSES).mean()
    print(
        f"GT labels: {n} segmented cells matched to a true cell with a GT class, "
        f"{right / n:.3f} agree with the true class; {called:.3f} of all cells got a class"
    )
    figure("nucleocentric", "gt_label_agreement", right / n)
    assert n >= 0.7 * len(labels)
    assert right / n >= 0.95


def test_split_is_by_whole_wells(run):
    split = pd.read_csv(run / "results/classify/split.tsv", sep="\t")
    per_well = split.groupby(["Metadata_Plate", "Metadata_Well"])["split"].nunique()
    assert (per_well == 1).all()
    test = split[split["split"] == "test"]
    assert len(test) >= 4 and set(CLASSES) <= set(test["class"])


@pytest.mark.parametrize("model", ["RF", "ResNet"])
def test_model_beats_chance_on_held_out_wells(run, model):
    cell_acc, n_cells = _test_metric(run, model, "unit")
    bal_acc, _ = _test_metric(run, model, "unit", "balanced_accuracy")
    wells = pd.read_parquet(run / f"results/classify/{model}/wells.parquet")
    held = wells[(wells["split"] == "test") & wells["true_class"].notna()]
    well_acc = float((held["majority_class"] == held["true_class"]).mean())
    print(
        f"{model}: held-out cell accuracy {cell_acc:.3f} (balanced {bal_acc:.3f}, {n_cells} cells), "
        f"monoculture well votes {well_acc:.3f} ({len(held)} wells)"
    )
    figure("nucleocentric", f"{model}_cell_accuracy", cell_acc)
    figure("nucleocentric", f"{model}_balanced_accuracy", bal_acc)
    figure("nucleocentric", f"{model}_well_accuracy", well_acc)
    # over training seeds (221 held-out cells in 6 wells of 2 plates; docs/benchmarks.md): RF 1.000, ResNet
    # 0.99-1.00; both call the 4 held-out monoculture wells right. With 6 epochs / patience 3 the ResNet
    # stopped at epoch 4 and kept epoch 1 (chance: batch norm had not settled): CI failed on it.
    assert cell_acc >= 0.8 and bal_acc >= 0.8  # chance: 0.5
    assert len(held) >= 2 and well_acc == 1.0
