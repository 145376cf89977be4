"""Every shipped example config plans (`snakemake -n`) on a small stand-in of its data layout.

The stand-in folder holds a few (empty) files with the names each example's patterns expect: the
plan only reads file names, so this checks the config (schema, cross-key checks, every stage's
inputs) the way a user's first `snakemake -n` does, without the papers' data.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SNAKEMAKE

pytestmark = pytest.mark.workflow

EXAMPLES = sorted((REPO / "config" / "examples").glob("*.yaml"))

# example -> (files of the stand-in, rules the plan must have, rules it must not have)
STAND_INS = {
    "celldeathpred": (
        [
            f"data/celldeathpred/{p}/r{r:02d}c03f01p01-ch{c}sk1fk1fl1.tiff"
            for p in ("P1", "P2")
            for r in (2, 3)
            for c in range(1, 6)
        ]
        + ["data/celldeathpred/layout.xlsx"],
        {"validate_images", "segment_cells", "segment_nuclei", "crop_rois", "extract_features"},
        {"align_gt"},
    ),
    "cellular": (
        [f"data/CELLULAR/images/{w}_s1.png" for w in ("B03", "C03", "D03", "D04")]
        + [
            f"data/CELLULAR/masks/{w}_s1_obj00{k}.png"
            for w in ("B03", "C03", "D03", "D04")
            for k in (1, 2)
        ],
        {"prepare_seg_training", "train_cellpose", "segment_cells", "evaluate_segmentation"},
        {"segment_nuclei", "crop_rois", "train_stardist"},
    ),
    "deeptosis": (
        [
            "data/deeptosis/plate1/B03_1.jpg",
            "data/deeptosis/plate1/B04_1.png",
            "data/deeptosis/layout.xlsx",
            "resources/models/timm/vit_base_patch16_224.pth",  # deep.models.ViT.pretrained
        ],
        {"validate_images", "segment_cells", "crop_rois", "build_units", "train_deep"},
        {"segment_nuclei"},
    ),
    "deeptosis_folder": (
        [
            "data/deeptosis_folder/apoptosis.jpg",
            "data/deeptosis_folder/1 AC.jpg",
            "data/deeptosis_folder/sample_03.png",
            "models/deeptosis_vit/model.json",  # predict.model (its content: CONTENT)
            "models/deeptosis_vit/model.pt",
        ],
        {
            "validate_images",
            "segment_cells",
            "crop_rois",
            "predict_crops",
            "predict_boxed",
            "predict_summary",
        },
        {"segment_nuclei", "train_deep"},
    ),
    "nucleocentric": (
        [f"data/ELIFE2024/{d}/{w}-01.nd2" for d in ("CP", "GT") for w in ("B-03", "C-03")]
        + ["data/ELIFE2024/layout.xlsx"],
        {
            "validate_images",
            "segment_cells",
            "segment_nuclei",
            "align_gt",
            "crop_rois",
            "extract_features",
            "gt_labels",
        },
        set(),
    ),
}


# Stand-in files with content (the rest are empty): a trained model's model.json is read at plan
# time (predict checks the new images have its channels and crop type).
CONTENT = {
    "models/deeptosis_vit/model.json": (
        '{"kind": "torch", "name": "ViT", "classes": ["apoptosis", "other", "pyroptosis"], '
        '"channels": ["R", "G", "B"], "input": "bbox", "unit": "cell"}'
    ),
}


def planned_rules(stdout: str) -> set[str]:
    """Rule names of the `Job stats` table of a dry run."""
    table = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)}


def test_every_example_has_a_stand_in():
    missing = [p.stem for p in EXAMPLES if p.stem not in STAND_INS]
    assert not missing, f"add a stand-in data layout for {missing} to STAND_INS"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_plans(example: Path, tmp_path):
    files, wanted, unwanted = STAND_INS[example.stem]
    for rel in files:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CONTENT.get(rel, ""))
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(example),
            "--cores",
            "1",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    rules = planned_rules(proc.stdout)
    assert wanted <= rules, (sorted(wanted - rules), out[-3000:])
    assert not (unwanted & rules), sorted(unwanted & rules)
