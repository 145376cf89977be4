"""Real snakemake run of the classification stage on a tiny plate: units (with an extra layout
sheet and a well filter), split, a fast Random Forest, evaluation, votes, plate map, summary and
per-well profiles; then bad inputs that must stop with a clear message and no output.

The demo's true masks stand in for segmentation and there is no GT stain (labels come from the
layout), so the run is short: 6 fields of 256 px (the co-culture wells are left out).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hcsflow.demo.plate import DemoSpec, generate

REPO = Path(__file__).resolve().parents[2]
PLATE = "Plate01"
FILTERED_WELL = "B04"  # astro well with ATP 0.95: outside the 0.3-0.8 window
CLS = "results/classify"

pytestmark = pytest.mark.workflow


def _config() -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return {
        "demo": {"enabled": False},
        "images": {
            **base["images"],
            "raw_dir": "demo_data/raw",
            "layout": "layout.xlsx",
            "layout_sheets_extra": ["ATP"],
        },
        "gt": None,
        "alignment": {"masks": "demo_data/truth/{plate}/{image}.{compartment}.tif"},
        "crops": {"types": ["nucleus"]},
        "features": {"compartments": ["Cells", "Nuclei"], "texture": {"levels": 16, "angles": [0]}},
        "labels": {"classes": {}, "thresholds": {}},
        "classify": {
            "enabled": True,
            "classes": {"astro": ["astro"], "SHSY5Y": ["SHSY5Y"]},
            "well_filter": "Metadata_ATP >= 0.3 and Metadata_ATP <= 0.8",
            "split": {"fractions": {"train": 0.5, "valid": 0.0, "test": 0.5}, "seed": 1},
            "models": {
                "RF": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 50}}
            },
            "threads": 1,
        },
    }


def _snakemake(workdir: Path, cfg: dict, *targets: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        "--nolock",
        "--rerun-triggers",
        "mtime",
        "params",
        "--",
        *targets,
    ]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)


def _layout(path: Path, culture: pd.DataFrame) -> None:
    atp = pd.DataFrame(np.nan, index=culture.index, columns=culture.columns)
    for row in culture.index:
        for col in culture.columns:
            if isinstance(culture.loc[row, col], str) and culture.loc[row, col]:
                atp.loc[row, col] = 0.5
    atp.loc["B", 4] = 0.95
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        culture.to_excel(xl, sheet_name="Culture")
        atp.to_excel(xl, sheet_name="ATP")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("classify_wf")
    generate(
        work / "demo_data",
        DemoSpec(n_plates=1, wells_per_condition=3, n_fields=1, image_size=256),
        progress=False,
    )
    culture = pd.read_excel(work / "demo_data" / "layout.xlsx", sheet_name="Culture", index_col=0)
    # no co-culture wells (their cells have no class without GT): 6 fields to featurise, not 9
    for f in (work / "demo_data" / "raw" / PLATE).glob("r04*"):
        f.unlink()
    culture.loc["D"] = np.nan
    _layout(work / "layout.xlsx", culture)
    targets = [f"{CLS}/summary.tsv", "results/profiles/wells.parquet"]
    proc = _snakemake(work, _config(), *targets)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work


def test_units_split_and_the_well_filter(run):
    units = pd.read_parquet(run / CLS / "units.parquet")
    split = pd.read_csv(run / CLS / "split.tsv", sep="\t")
    labels = pd.read_parquet(run / "results" / "labels.parquet")
    mono = labels[
        labels["Metadata_Condition"].isin(["astro", "SHSY5Y"])
        & (labels["Metadata_Well"] != FILTERED_WELL)
    ]
    assert len(units) == len(mono)  # every monoculture cell of a kept well
    assert (units["class"] == units["Metadata_Condition"]).all()
    assert units["Metadata_ATP"].dtype.kind == "f" and (units["Metadata_ATP"] == 0.5).all()
    assert FILTERED_WELL not in set(units["Metadata_Well"])
    f = split[split["split"] == "filtered"]
    assert f[["Metadata_Well", "class"]].values.tolist() == [[FILTERED_WELL, "astro"]]
    kept = split[split["split"] != "filtered"]
    assert not kept.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    assert (units.groupby("Metadata_Well")["split"].nunique() == 1).all()
    # astro: 2 wells -> 1 test + 1 train; SHSY5Y: 3 wells -> round(1.5) = 2 test + 1 train
    assert kept.groupby(["class", "split"]).size().to_dict() == {
        ("SHSY5Y", "test"): 2,
        ("SHSY5Y", "train"): 1,
        ("astro", "test"): 1,
        ("astro", "train"): 1,
    }
    assert units["sampled"].all()


def test_model_predictions_metrics_and_votes(run):
    d = run / CLS / "RF"
    units = pd.read_parquet(run / CLS / "units.parquet")
    pred = pd.read_parquet(d / "predictions.parquet")
    info = json.loads((d / "model.json").read_text())
    assert info["kind"] == "sklearn" and info["classes"] == ["astro", "SHSY5Y"]
    assert info["estimator"] == "RandomForestClassifier" and info["params"]["random_state"] == 1
    # the illumination correction its training images had (the default), with each plate's
    # fitted functions per channel
    illum = info["inputs"]["illumination"]
    assert illum["method"] == "background"
    plates = sorted(units["Metadata_Plate"].unique())
    assert sorted(illum["functions"]) == plates
    assert all(
        0 < f["min"] <= 1 <= f["max"] for p in plates for f in illum["functions"][p].values()
    )
    assert 0 < len(info["features"]) and all(
        f.split("_")[0] in ("Cells", "Nuclei") for f in info["features"]
    )
    assert len(pred) == len(units)
    assert list(pred.columns[-5:]) == [
        "true_class",
        "pred_class",
        "confidence",
        "Prob_astro",
        "Prob_SHSY5Y",
    ]
    np.testing.assert_allclose(pred[["Prob_astro", "Prob_SHSY5Y"]].sum(axis=1), 1.0)
    test = pred[pred["split"] == "test"]
    acc = (test["pred_class"] == test["true_class"]).mean()
    metrics = pd.read_csv(d / "metrics.tsv", sep="\t").set_index(["level", "split", "metric"])
    assert metrics.loc[("unit", "test", "accuracy"), "value"] == pytest.approx(acc)
    assert metrics.loc[("unit", "test", "accuracy"), "n"] == len(test)
    assert acc >= 0.9
    wells = pd.read_parquet(d / "wells.parquet")
    tw = wells[wells["split"] == "test"]
    assert len(tw) == 3 and (tw["majority_class"] == tw["true_class"]).all()
    assert metrics.loc[("well", "test", "accuracy"), "value"] == 1.0
    report = pd.read_csv(d / "class_report.tsv", sep="\t")
    assert set(report["class"]) == {"astro", "SHSY5Y"}
    imp = pd.read_csv(d / "importances.tsv", sep="\t")
    assert len(imp) == min(20, len(info["features"])) and set(imp["feature"]) <= set(
        info["features"]
    )
    for png in ("confusion.png", "roc.png", f"heatmap_{PLATE}.png", "importances.png"):
        assert (d / png).stat().st_size > 5000, png
    summary = pd.read_csv(run / CLS / "summary.tsv", sep="\t")
    assert summary[["model", "level"]].values.tolist() == [["RF", "unit"], ["RF", "well"]]
    assert summary.loc[0, "accuracy"] == pytest.approx(acc)


def test_well_profiles(run):
    prof = pd.read_parquet(run / "results" / "profiles" / "wells.parquet")
    feats = pd.read_parquet(run / "results" / "features.parquet")
    assert len(prof) == 6 and (prof["Metadata_ATP"].notna()).all()
    b02 = feats[feats["Metadata_Well"] == "B02"]
    row = prof.set_index("Metadata_Well").loc["B02"]
    assert row["Metadata_Object_Count"] == len(b02)
    assert row["Cells_DAPI_Intensity_Mean"] == pytest.approx(
        b02["Cells_DAPI_Intensity_Mean"].median()
    )
    assert row["Metadata_Condition"] == "astro"


def _bad_copy(run: Path, name: str) -> Path:
    bad = run.parent / f"{run.name}_{name}"
    shutil.copytree(run, bad, symlinks=True, ignore=shutil.ignore_patterns("classify", "profiles"))
    return bad


@pytest.mark.parametrize(
    "name, change, message",
    [
        (
            "absent_class",
            lambda c: c["classify"]["classes"].update(neuron=["neurons"]),
            r"class\(es\) \['neuron'\] match no cell",
        ),
        # (an unknown well-filter column, too few cells for sample_per_class, a training split with
        # one class: same rule, same path; their messages are checked in tests/unit)
    ],
)
def test_bad_classify_input_stops_with_a_clear_message_and_no_output(run, name, change, message):
    import re

    bad = _bad_copy(run, name)
    cfg = _config()
    change(cfg)
    proc = _snakemake(bad, cfg, f"{CLS}/summary.tsv")
    assert proc.returncode != 0
    log = (bad / "logs" / "classify" / "build_units.log").read_text()
    assert re.search(message, log), log[-2000:]
    assert not (bad / CLS).exists() or not any((bad / CLS).rglob("*.*"))


def test_all_nan_feature_column_is_named(run):
    bad = _bad_copy(run, "nan")
    feats = pd.read_parquet(bad / "results" / "features.parquet")
    feats["Nuclei_DAPI_Intensity_Mean"] = np.nan
    feats.to_parquet(bad / "results" / "features.parquet", index=False)
    proc = _snakemake(bad, _config(), f"{CLS}/summary.tsv")
    assert proc.returncode != 0
    log = (bad / "logs" / "classify" / "train_classifier" / "RF.log").read_text()
    assert "['Nuclei_DAPI_Intensity_Mean'] are all NaN in the training units" in log
    assert not (bad / CLS / "RF").exists() or not any((bad / CLS / "RF").iterdir())


def test_missing_layout_sheet_stops_ingest(run):
    bad = _bad_copy(run, "sheet")
    (bad / "results" / "images.tsv").unlink()
    cfg = _config()
    cfg["images"]["layout_sheets_extra"] = ["ATP", "Treatment"]
    proc = _snakemake(bad, cfg, "results/images.tsv")
    assert proc.returncode != 0
    log = (bad / "logs" / "ingest.log").read_text()
    assert "layout.xlsx has no sheet 'Treatment'" in log and "images.layout_sheets_extra" in log
    assert not (bad / "results" / "images.tsv").exists()


def test_repeats_train_every_model_with_successive_seeds_and_summarise_them(run):
    """classify.repeats: 3 -> RF (seed 1 = split.seed), RF/seed1 (2), RF/seed2 (3) on the same
    split; summary.tsv: mean, sd, min, max over the three runs and repeat 0's Wilson interval."""
    rep = run.parent / f"{run.name}_repeats"
    shutil.copytree(run, rep, symlinks=True)
    cfg = _config()
    cfg["classify"]["repeats"] = 3
    proc = _snakemake(rep, cfg, f"{CLS}/summary.tsv")
    assert proc.returncode == 0, proc.stderr[-5000:]
    seeds, accs = [], []
    for sub in ("RF", "RF/seed1", "RF/seed2"):
        d = rep / CLS / sub
        seeds.append(json.loads((d / "model.json").read_text())["params"]["random_state"])
        m = pd.read_csv(d / "metrics.tsv", sep="\t").set_index(["level", "split", "metric"])
        accs.append(m.loc[("unit", "test", "accuracy"), "value"])
        assert (
            0
            <= m.loc[("well", "test", "accuracy"), "ci_low"]
            <= m.loc[("well", "test", "accuracy"), "value"]
        )
    assert seeds == [1, 2, 3]
    # repeat 0 is the run without repeats, unchanged
    first = pd.read_parquet(run / CLS / "RF" / "predictions.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(rep / CLS / "RF" / "predictions.parquet"), first)
    summary = pd.read_csv(rep / CLS / "summary.tsv", sep="\t").set_index(["model", "level"])
    row = summary.loc[("RF", "unit")]
    assert row["runs"] == 3 and summary.index.get_level_values("model").unique().tolist() == ["RF"]
    assert row["accuracy"] == pytest.approx(np.mean(accs))
    assert row["accuracy_sd"] == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
    assert (row["accuracy_min"], row["accuracy_max"]) == pytest.approx((min(accs), max(accs)))
    assert row["accuracy_ci_low"] <= accs[0] <= row["accuracy_ci_high"]
    # classify.seed sets every model's training seed at once
    cfg["classify"].update(repeats=1, seed=5)
    proc = _snakemake(rep, cfg, f"{CLS}/RF/model.json")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert json.loads((rep / CLS / "RF" / "model.json").read_text())["params"]["random_state"] == 5
