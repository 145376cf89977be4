"""Real snakemake run of the deep stage on a tiny two-plate demo: units and split (classify),
nucleocentric and bounding-box crops, a SupCon + CE ResNet with plate-aware batches and a tiny
ViT, each evaluated by the shared evaluate_model rule; embeddings, UMAP, plate mixing, GradCAM.
Bad config must stop the plan with a clear message (`snakemake -n`, so no output). Every
parse-time message is unit-tested in tests/unit/test_deep_models.py::
test_parse_time_checks_of_the_deep_section; the run-time ones (an unknown timm name, checked by
train_deep before it reads data; a class without training units) in test_deep_models.py and
test_deep_train.py.

True masks stand in for segmentation, labels come from the layout (no GT stain, no co-culture
wells): 2 plates x 4 fields of 256 px; models at 32 px for 2 epochs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hcsflow.demo.plate import DemoSpec, generate

REPO = Path(__file__).resolve().parents[2]
CLS = "results/classify"
MODELS = ("sc", "vit")

pytestmark = pytest.mark.workflow


def _config() -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    small = {"image_size": 32, "epochs": 2, "patience": 2, "lr": 0.001, "seed": 0}
    return {
        "demo": {"enabled": False},
        "images": {**base["images"], "raw_dir": "demo_data/raw", "layout": "layout.xlsx"},
        "gt": None,
        "alignment": {"masks": "demo_data/truth/{plate}/{image}.{compartment}.tif"},
        "crops": {"types": ["nucleocentric", "bbox"], "bbox": {"size": 48}},
        "features": {"compartments": ["Nuclei"], "shape": False, "texture": {"enabled": False}},
        "labels": {"classes": {}, "thresholds": {}},
        "classify": {
            "enabled": True,
            "classes": {"astro": ["astro"], "SHSY5Y": ["SHSY5Y"]},
            "split": {
                "fractions": {"train": 0.5, "valid": 0.25, "test": 0.25},
                "seed": 4,
            },  # train wells on both plates
            "models": {},
            "profiles": {"enabled": False},
        },
        "deep": {
            "enabled": True,
            "threads": 2,
            "umap": {"n_neighbors": 10, "k": 10},
            "gradcam": {"n_per_class": 3},
            "models": {
                "sc": {
                    "architecture": "resnet10t",
                    "input": "nucleocentric",
                    "channels": ["DAPI", "FITC", "Cy3"],
                    "loss": "supcon_ce",
                    "batch": {"plate_aware": True, "n_plates": 2, "n_per_class": 4, "per_epoch": 4},
                    "normalisation": {"method": "equalize"},
                    **small,
                },
                "vit": {
                    "architecture": "vit_tiny_patch16_224",
                    "input": "bbox",
                    "batch": {"size": 16},
                    **small,
                },
            },
        },
    }


def _snakemake(
    workdir: Path, cfg: dict, *targets: str, dry: bool = False
) -> subprocess.CompletedProcess:
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
        *(["-n"] if dry else []),
        "--",
        *targets,
    ]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1500)


# Every deep job pays ~10 s of torch/timm start-up and UMAP its numba compilation, so each
# model makes only what its case needs: both are trained and evaluated (metrics, well votes,
# curves); the SupCon CNN makes embeddings, UMAP and plate mixing (the batch-effect number), the
# ViT makes GradCAM (with its reshape transform). The other pairs are unit-tested
# (tests/unit/test_deep_models.py: ViT embeddings; test_deep_embed_gradcam.py: CNN GradCAM).
PER_MODEL = {
    "sc": ("embeddings.parquet", "mixing.tsv", "umap.png"),
    "vit": ("gradcam.png",),
}


def _targets():
    return [
        f"{CLS}/{m}/{f}"
        for m in MODELS
        for f in ("metrics.tsv", "wells.parquet", "curves.png", *PER_MODEL[m])
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("deep_wf")
    generate(
        work / "demo_data",
        DemoSpec(n_plates=2, wells_per_condition=2, n_fields=1, image_size=256),
        progress=False,
    )
    culture = pd.read_excel(work / "demo_data" / "layout.xlsx", sheet_name="Culture", index_col=0)
    for plate in (
        "Plate01",
        "Plate02",
    ):  # no co-culture wells: their cells have no class without GT
        for f in (work / "demo_data" / "raw" / plate).glob("r04*"):
            f.unlink()
    culture.loc["D"] = np.nan
    with pd.ExcelWriter(work / "layout.xlsx", engine="openpyxl") as xl:
        culture.to_excel(xl, sheet_name="Culture")
    proc = _snakemake(work, _config(), *_targets())
    assert proc.returncode == 0, proc.stderr[-6000:]
    return work


def test_predictions_follow_the_contract_and_are_evaluated(run):
    units = pd.read_parquet(run / CLS / "units.parquet")
    for m in MODELS:
        pred = pd.read_parquet(run / CLS / m / "predictions.parquet")
        assert len(pred) == len(units)
        assert set(pred["split"]) == {"train", "valid", "test"}
        keys = ["Metadata_Plate", "Metadata_Image", "Metadata_ObjectNumber"]
        both = pred.merge(units[[*keys, "class"]], on=keys, how="left", validate="one_to_one")
        assert (both["true_class"] == both["class"]).all()
        probs = pred[["Prob_astro", "Prob_SHSY5Y"]].to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
        np.testing.assert_allclose(pred["confidence"], probs.max(1), rtol=1e-6)
        metrics = pd.read_csv(run / CLS / m / "metrics.tsv", sep="\t")
        acc = metrics[
            (metrics["level"] == "unit")
            & (metrics["split"] == "test")
            & (metrics["metric"] == "accuracy")
        ]
        test = pred[pred["split"] == "test"]
        assert float(acc["value"].iloc[0]) == pytest.approx(
            float((test["pred_class"] == test["true_class"]).mean())
        )
        wells = pd.read_parquet(run / CLS / m / "wells.parquet")
        assert set(wells["Metadata_Well"]) == set(units["Metadata_Well"])


def test_model_file_holds_what_prediction_needs_and_checkpoints_are_gone(run):
    spec = json.loads((run / CLS / "sc" / "model.json").read_text())
    assert spec["kind"] == "torch" and spec["classes"] == ["astro", "SHSY5Y"]
    assert spec["channels"] == ["DAPI", "FITC", "Cy3"] and spec["in_chans"] == 3
    assert spec["input"] == "nucleocentric" and spec["image_size"] == 32
    assert spec["inputs"]["illumination"]["method"] == "background"  # the default
    assert (
        spec["normalisation"]["method"] == "equalize"
        and len(spec["normalisation"]["values"]["quantiles"]) == 3
    )
    vit = json.loads((run / CLS / "vit" / "model.json").read_text())
    assert (
        vit["architecture"] == "vit_tiny_patch16_224"
        and vit["input"] == "bbox"
        and vit["in_chans"] == 4
    )
    assert not any((run / "results" / ".checkpoints").glob("*/last.pt"))
    hist = pd.read_csv(run / CLS / "sc" / "history.tsv", sep="\t")
    assert (
        hist["epoch"].tolist() == [1, 2]
        and "train_supcon" in hist
        and hist["valid_loss"].notna().all()
    )
    log = (run / "logs" / "deep" / "train_deep" / "sc.log").read_text()
    assert "plate-aware batches: 2 plates x 2 classes x 4 units = 16 per batch" in log
    assert "falling back to CPU" in log and "epoch 2/2" in log
    # the deep model's (well, evaluated) summary row is there with the classical ones
    assert (run / CLS / "sc" / "confusion.png").stat().st_size > 1000


def test_embeddings_umap_mixing_and_gradcam(run):
    units = pd.read_parquet(run / CLS / "units.parquet")
    emb = pd.read_parquet(run / CLS / "sc" / "embeddings.parquet")
    assert len(emb) == len(units) and emb.filter(like="Emb_").shape[1] == 512
    assert np.isfinite(emb.filter(like="Emb_").to_numpy()).all()
    mixing = pd.read_csv(run / CLS / "sc" / "mixing.tsv", sep="\t")
    allrows = mixing[(mixing["split"] == "all") & (mixing["class"] == "all")].set_index("metric")[
        "value"
    ]
    assert set(allrows.index) == {
        "knn_plate_entropy",
        "silhouette_plate",
        "knn_class_agreement",
        "silhouette_class",
    }
    assert 0 <= allrows["knn_plate_entropy"] <= 1 and -1 <= allrows["silhouette_plate"] <= 1
    figures = [f"{m}/{f}" for m in MODELS for f in ("curves.png", *PER_MODEL[m]) if "png" in f]
    assert sorted(figures) == ["sc/curves.png", "sc/umap.png", "vit/curves.png", "vit/gradcam.png"]
    for fig in figures:
        assert (run / CLS / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (run / "logs" / "deep" / "gradcam_deep" / "vit.log").read_text()
    assert "GradCAM of 6 units" in log


BAD = [
    ("unknown_channel", lambda c: c["deep"]["models"]["sc"].update(channels=["GFP"]), "GFP"),
    (
        "pretrained_missing",
        lambda c: c["deep"]["models"]["sc"].update(pretrained="weights/none.pth"),
        "download it once",
    ),
]


@pytest.mark.parametrize("name,change,message", BAD, ids=[b[0] for b in BAD])
def test_bad_deep_config_stops_the_plan_with_a_clear_message(run, name, change, message):
    cfg = _config()
    change(cfg)
    proc = _snakemake(run, cfg, *_targets(), dry=True)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
