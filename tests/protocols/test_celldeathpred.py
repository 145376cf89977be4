"""CellDeathPred protocol end to end, as its users run it, on the celldeath scenario.

config/test/celldeathpred.yaml (run as committed, relative paths, in a scratch folder exactly like
``snakemake --cores 2 --configfile config/test/celldeathpred.yaml --directory runs/celldeathpred``):
four plates of 5-channel Cell Painting fields with a plate batch effect; the ATP well filter;
a split by plate (two plates train, one validation plate on which the settings are chosen, one
test plate nothing was tuned on); RF / LogReg / AdaBoost on per-field features; a field-level
EfficientNet with SupCon + cross-entropy on plate-aware batches and the same network and batches
with cross-entropy only; well majority votes, UMAP by class and by plate, plate-mixing scores.

Every threshold below held on every training seed measured (``make test-protocols SEED=N``); figures per
seed: ``make bench-protocols`` (docs/benchmarks.md, "Protocols over seeds").

The scenario's truth (``demo_data/truth/wells.tsv``: which wells the ATP filter must keep) is
only read here, by the test, never by the workflow.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import figure, run_protocol

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
    return (
        float((held["majority_class"] == held["true_class"]).mean()),
        len(held),
        float((test["pred_class"] == test["true_class"]).mean()),
        len(test),
    )


def _mixing(run, model: str) -> pd.DataFrame:
    return pd.read_csv(run / f"results/classify/{model}/mixing.tsv", sep="\t")


def test_atp_filter_dropped_exactly_the_out_of_range_wells(run, split):
    truth = pd.read_csv(run / "demo_data/truth/wells.tsv", sep="\t")
    plates = sorted(split["Metadata_Plate"].unique())
    assert len(plates) == 4
    dropped = split[split["split"] == "filtered"]
    for plate in plates:
        got = set(dropped.loc[dropped["Metadata_Plate"] == plate, "Metadata_Well"])
        assert got == set(truth.loc[~truth["keep"], "well"]), plate
        kept = set(
            split.loc[
                (split["Metadata_Plate"] == plate) & (split["split"] != "filtered"), "Metadata_Well"
            ]
        )
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
    assert sorted(tuple(s) for s in per_plate) == [("test",), ("train",), ("train",), ("valid",)]
    for part in ("test", "valid"):
        assert set(used.loc[used["split"] == part, "class"]) == set(CLASSES)


def test_supcon_and_ce_trained_on_the_same_plate_aware_batches(run):
    """Both networks see 2 plates x 3 classes x 5 fields per batch (the paper's 30), so a
    difference in plate mixing comes from the loss, not the sampler."""
    for model in DEEP:
        spec = json.loads((run / f"results/classify/{model}/model.json").read_text())
        b = spec["batches"]
        print(f"{model} batches: {b['summary']}")
        assert b["plate_aware"] and b["n_plates"] == 2 and b["n_per_class"] == 5
        assert b["summary"]["plates_per_batch"] == [2, 2]
        assert b["summary"]["units_per_plate_and_class"] == [5, 5]
        assert b["summary"]["batch_size"] == [30, 30]
        for comp in b["first_epoch"]:
            assert len(comp) == 2 and all(
                counts == {c: 5 for c in sorted(CLASSES)} for counts in comp.values()
            )
    supcon = json.loads((run / "results/classify/SupCon/model.json").read_text())
    ce = json.loads((run / "results/classify/CE/model.json").read_text())
    assert supcon["batches"]["first_epoch"] == ce["batches"]["first_epoch"]  # the same batches
    assert supcon["loss"] == "supcon_ce" and ce["loss"] == "ce"


def test_plate_mixing_of_supcon_and_cross_entropy(run):
    rows = {}
    for model in DEEP:
        mix = _mixing(run, model)
        for split in ("all", "train"):
            m = mix[mix["split"] == split].set_index(["class", "metric"])["value"]
            within = m.xs("knn_plate_entropy", level="metric").drop("all")
            rows[(model, split)] = dict(
                entropy=m[("all", "knn_plate_entropy")],
                within_class=within.mean(),
                silhouette_plate=m[("all", "silhouette_plate")],
                class_agreement=m[("all", "knn_class_agreement")],
            )
    table = pd.DataFrame(rows).T
    print(f"plate mixing (kNN plate entropy: 1 = mixed, 0 = separated):\n{table}")
    for (model, split), row in table.iterrows():
        for k, v in row.items():
            figure("celldeathpred", f"{model}_{split}_{k}", v)
    allu = table.xs("all", level=1)
    for k in ("entropy", "within_class", "class_agreement"):
        figure("celldeathpred", f"SupCon_minus_CE_{k}", allu.loc["SupCon", k] - allu.loc["CE", k])
    # Both networks mix the plates and keep the classes apart, on every seed measured. Whether SupCon
    # mixes them better than CE on the same batches is measured (FIGURE SupCon_minus_CE_*) and
    # reported in docs/benchmarks.md over seeds, not asserted: it does not hold on every seed.
    # over seeds 0-4: entropy of all units 0.69-0.86 (the test plate's focus and fringes), of the
    # two training plates 0.79-0.95 (CE: 0.789 on seed 3, 0.860 on seed 4, 0.90 or more on the others); class agreement
    # 0.96-1.00; silhouette by plate -0.07 to 0.04. Floors below the worst seed.
    assert (allu["entropy"] >= 0.6).all() and (table.xs("train", level=1)["entropy"] >= 0.7).all()
    assert (table["silhouette_plate"] < 0.1).all()
    assert (allu["class_agreement"] >= 0.9).all()


def test_umap_figures_by_class_and_by_plate(run):
    for model in DEEP:
        png = run / f"results/classify/{model}/umap.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        emb = pd.read_parquet(run / f"results/classify/{model}/embeddings.parquet")
        assert emb["Metadata_Plate"].nunique() == 4 and set(emb["true_class"]) == set(CLASSES)


def test_well_votes_on_the_unseen_plate(run):
    scores = {m: _well_accuracy(run, m) for m in BASELINES + DEEP}
    for m, (wacc, nw, facc, nf) in scores.items():
        print(
            f"{m}: unseen plate: field accuracy {facc:.3f} ({nf} fields), "
            f"well majority vote {wacc:.3f} ({nw} wells)"
        )
        figure("celldeathpred", f"{m}_test_well_accuracy", wacc)
        figure("celldeathpred", f"{m}_test_field_accuracy", facc)
    for m in BASELINES + DEEP:
        assert scores[m][1] >= 15  # every kept well of the test plate is voted
    # a model trained on the scenario reaches >= 0.9 on held-out wells of an unseen plate
    best = max(scores, key=lambda m: scores[m][0])
    print(f"best on the unseen plate: {best}")
    assert scores[best][0] >= 0.9, scores
    for m in BASELINES + DEEP:
        assert scores[m][0] >= 0.6, (m, scores[m])  # chance: 0.33
