"""CellDeathPred protocol end to end, as its users run it, on the celldeath scenario.

config/test/celldeathpred.yaml (run as committed, relative paths, in a scratch folder exactly like
``snakemake --cores 2 --configfile config/test/celldeathpred.yaml --directory runs/celldeathpred``):
three plates of 5-channel Cell Painting fields with a plate batch effect; the ATP well filter;
a split by plate (two plates train, the third is never trained on); RF / LogReg / AdaBoost on
per-field features; a field-level EfficientNet with SupCon + cross-entropy on plate-aware
batches (frozen batch norm) and the same network with cross-entropy only; well majority votes,
UMAP by class and by plate, plate-mixing scores.

The scenario's truth (``demo_data/truth/wells.tsv``: which wells the ATP filter must keep) is
only read here, by the test, never by the workflow.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_protocol

pytestmark = [pytest.mark.protocol, pytest.mark.workflow]

CLASSES = ["healthy", "apoptosis", "ferroptosis"]
BASELINES = ["RF", "LogReg", "AdaBoost"]
DEEP = ["SupCon", "CE"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_protocol(tmp_path_factory, "celldeathpred")


@pytest.fixture(scope="module")
def split(run):
    return pd.read_csv(run / "results/classify/split.tsv", sep="\t")


def _well_accuracy(run, model: str) -> tuple[float, int, float, int]:
    """(well majority-vote accuracy, wells, field accuracy, fields) on the test split."""
    wells = pd.read_parquet(run / f"results/classify/{model}/wells.parquet")
    held = wells[wells["split"] == "test"]
    preds = pd.read_parquet(run / f"results/classify/{model}/predictions.parquet")
    test = preds[preds["split"] == "test"]
    return (float((held["majority_class"] == held["true_class"]).mean()), len(held),
            float((test["pred_class"] == test["true_class"]).mean()), len(test))


def _mixing(run, model: str) -> pd.DataFrame:
    return pd.read_csv(run / f"results/classify/{model}/mixing.tsv", sep="\t")


def test_atp_filter_dropped_exactly_the_out_of_range_wells(run, split):
    truth = pd.read_csv(run / "demo_data/truth/wells.tsv", sep="\t")
    plates = sorted(split["Metadata_Plate"].unique())
    assert len(plates) == 3
    dropped = split[split["split"] == "filtered"]
    for plate in plates:
        got = set(dropped.loc[dropped["Metadata_Plate"] == plate, "Metadata_Well"])
        assert got == set(truth.loc[~truth["keep"], "well"]), plate
        kept = set(split.loc[(split["Metadata_Plate"] == plate) & (split["split"] != "filtered"),
                             "Metadata_Well"])
        assert kept == set(truth.loc[truth["keep"], "well"]), plate
    # the filter dropped wells on both sides of the range, and kept the DMSO controls (ATP ~1)
    status = truth.set_index("well")["atp_status"]
    assert set(status[sorted(set(dropped["Metadata_Well"]))]) == {"ineffective", "dead"}
    units = pd.read_parquet(run / "results/classify/units.parquet")
    assert (units["Metadata_ATP"].between(0.3, 0.8) | (units["Metadata_Treatment"] == "DMSO")).all()
    assert set(units["class"]) == set(CLASSES)


def test_held_out_wells_are_on_a_plate_never_trained_on(split):
    used = split[split["split"] != "filtered"]
    per_plate = used.groupby("Metadata_Plate")["split"].agg(set)
    test_plates = [p for p, s in per_plate.items() if "test" in s]
    assert len(test_plates) == 1 and per_plate[test_plates[0]] == {"test"}
    assert sum("train" in s for s in per_plate) == 2
    assert set(used.loc[used["split"] == "test", "class"]) == set(CLASSES)


def test_supcon_batches_were_plate_aware_and_ce_batches_were_not(run):
    supcon = json.loads((run / "results/classify/SupCon/model.json").read_text())["batches"]
    print(f"SupCon batches: {supcon['summary']}")
    assert supcon["plate_aware"] and supcon["n_plates"] == 2 and supcon["n_per_class"] == 5
    # every batch of every epoch: 2 plates x 3 classes x 5 fields = 30 (the paper's batch)
    assert supcon["summary"]["plates_per_batch"] == [2, 2]
    assert supcon["summary"]["units_per_plate_and_class"] == [5, 5]
    assert supcon["summary"]["batch_size"] == [30, 30]
    for comp in supcon["first_epoch"]:
        assert len(comp) == 2 and all(counts == {c: 5 for c in sorted(CLASSES)}
                                      for counts in comp.values())
    ce = json.loads((run / "results/classify/CE/model.json").read_text())["batches"]
    print(f"CE batches: {ce['summary']}")
    assert not ce["plate_aware"]
    # plain shuffled batches: some (plate, class) cell of some batch is not 5
    assert ce["summary"]["units_per_plate_and_class"] != [5, 5]


def test_plate_mixing_of_supcon_beats_cross_entropy(run):
    rows = {}
    for model in DEEP:
        mix = _mixing(run, model)
        for split in ("all", "train"):
            m = mix[mix["split"] == split].set_index(["class", "metric"])["value"]
            within = m.xs("knn_plate_entropy", level="metric").drop("all")
            rows[(model, split)] = dict(entropy=m[("all", "knn_plate_entropy")],
                                        within_class=within.mean(),
                                        silhouette_plate=m[("all", "silhouette_plate")],
                                        class_agreement=m[("all", "knn_class_agreement")])
    table = pd.DataFrame(rows).T
    print(f"plate mixing (kNN plate entropy: 1 = mixed, 0 = separated):\n{table}")
    allu = table.xs("all", level=1)
    # The scenario's plates differ in focus and background fringes, which per-field equalisation
    # keeps (tests/unit/test_demo_scenarios.py). Measured on all units (the unseen plate
    # included): kNN plate entropy SupCon 0.85 vs CE 0.80, within a class 0.85 vs 0.79, silhouette
    # by plate -0.05 vs 0.01; on the two training plates alone both mix (0.90 / 0.91).
    assert allu.loc["SupCon", "entropy"] > allu.loc["CE", "entropy"]
    assert allu.loc["SupCon", "within_class"] > allu.loc["CE", "within_class"]
    assert allu.loc["SupCon", "silhouette_plate"] < allu.loc["CE", "silhouette_plate"]
    assert (table["entropy"] >= 0.7).all() and (table["silhouette_plate"] < 0.1).all()
    # SupCon's classes are tighter too (class agreement 0.99 vs 0.91)
    assert allu.loc["SupCon", "class_agreement"] >= 0.95


def test_umap_figures_by_class_and_by_plate(run):
    for model in DEEP:
        png = run / f"results/classify/{model}/umap.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        emb = pd.read_parquet(run / f"results/classify/{model}/embeddings.parquet")
        assert emb["Metadata_Plate"].nunique() == 3 and set(emb["true_class"]) == set(CLASSES)


def test_well_votes_on_the_unseen_plate(run):
    scores = {m: _well_accuracy(run, m) for m in BASELINES + DEEP}
    for m, (wacc, nw, facc, nf) in scores.items():
        print(f"{m}: unseen plate: field accuracy {facc:.3f} ({nf} fields), "
              f"well majority vote {wacc:.3f} ({nw} wells)")
    for m in BASELINES + DEEP:
        assert scores[m][1] >= 15  # every kept well of the test plate is voted
    # issue 13: a model trained on the scenario reaches >= 0.9 on held-out wells of an unseen plate
    best = max(scores, key=lambda m: scores[m][0])
    print(f"best on the unseen plate: {best}")
    assert scores[best][0] >= 0.9, scores
    # measured on the unseen plate (17 wells, 34 fields): RF 1.000 / 1.000 (wells / fields),
    # LogReg 0.941 / 0.912, AdaBoost 0.824 / 0.765, SupCon 1.000 / 0.971, CE 0.882 / 0.765: the
    # plate-blind network and the boosted stumps feel the unseen plate's focus and fringes
    assert scores["SupCon"][0] >= 0.9 and scores["RF"][0] >= 0.9, scores
    for m in BASELINES + DEEP:
        assert scores[m][0] >= 0.7, (m, scores[m])  # chance: 0.33
