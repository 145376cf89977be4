"""Demo scenarios celldeath and brightfield: deterministic, planned files = written files, truth."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import tifffile

from hcsflow.demo.scenarios import (
    BrightfieldSpec,
    CellDeathSpec,
    generate_brightfield,
    generate_celldeath,
)

SMALL_CD = CellDeathSpec(
    n_plates=2,
    n_fields=1,
    image_size=128,
    cells_per_field=12,
    compounds_per_class=1,
    concentrations=5,
    control_wells=2,
)


def _digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".tif", ".tiff", ".png", ".jpg", ".tsv")
    }


def test_celldeath_deterministic_planned_and_atp(tmp_path):
    generate_celldeath(tmp_path / "a", SMALL_CD, progress=False)
    generate_celldeath(tmp_path / "b", SMALL_CD, progress=False)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a == b and len(a) > 10
    plan = SMALL_CD.planned_files()
    written = sorted(
        p.relative_to(tmp_path / "a" / "raw").as_posix()
        for p in (tmp_path / "a" / "raw").rglob("*.tiff")
    )
    assert written == sorted(plan["raw"]) and len(written) == 2 * 12 * 5
    raw = tifffile.imread(tmp_path / "a" / "raw" / plan["raw"][0])
    assert raw.dtype == np.uint16 and raw.shape == (128, 128)
    wells = pd.read_csv(tmp_path / "a" / "truth" / "wells.tsv", sep="\t")
    assert {"ineffective", "dead", "in_range", "control"} <= set(wells.atp_status)
    out = wells[~wells.atp.between(0.3, 0.8) & (wells.treatment != "DMSO")]
    assert set(out.well) == set(wells.well[~wells.keep])
    for sheet, col in (("Culture", "condition"), ("ATP", "atp")):
        grid = pd.read_excel(tmp_path / "a" / "layout.xlsx", sheet_name=sheet, index_col=0)
        for w in wells.itertuples():
            assert grid.loc[w.row, w.col] == getattr(w, col)


def test_celldeath_plate_effect_survives_per_field_equalisation(tmp_path):
    """Rank-equalising a field removes a plate's gain and background, not its fringes or focus:
    the equalised background's strongest spatial frequency is the plate's fringe period, and the
    defocused plate's equalised fields are smoother."""
    import torch

    from hcsflow.deep.data import equalize_per_image

    spec = CellDeathSpec(
        n_plates=2,
        n_fields=2,
        image_size=128,
        cells_per_field=6,
        compounds_per_class=1,
        concentrations=3,
        control_wells=2,
    )
    generate_celldeath(tmp_path, spec, progress=False)
    eff = spec.plate_effects().drop_duplicates("plate").set_index("plate")
    plan = [f for f in spec.planned_files()["raw"] if f.endswith("-ch1sk1fk1fl1.tiff")]
    smooth = {}
    for plate in spec.plate_names():
        fields = np.stack(
            [tifffile.imread(tmp_path / "raw" / f) for f in plan if f.startswith(plate)]
        )
        eq = equalize_per_image(torch.tensor(fields[:, None].astype(np.float32)))[:, 0].numpy()
        power = (np.abs(np.fft.fft2(eq - eq.mean(axis=(1, 2), keepdims=True))) ** 2).mean(0)
        power[0, 0] = 0
        fy, fx = np.unravel_index(power.argmax(), power.shape)
        fy, fx = np.fft.fftfreq(128)[[fy, fx]]
        period = 1 / np.hypot(fy, fx)
        assert (
            abs(period - eff.loc[plate, "fringe_period"]) < 0.15 * eff.loc[plate, "fringe_period"]
        ), plate
        smooth[plate] = float(np.abs(np.diff(eq, axis=2)).mean())
    # Plate01 is in focus (sigma ~0), Plate02 defocused (sigma ~0.8): smaller pixel-to-pixel steps
    assert eff.loc["Plate02", "focus_sigma"] > 0.75 > 0.2 > eff.loc["Plate01", "focus_sigma"]
    assert smooth["Plate02"] < smooth["Plate01"]


def test_brightfield_names_are_not_wells(tmp_path):
    spec = BrightfieldSpec(naming="files", images_per_class=1, mixed_images=3, image_size=128)
    generate_brightfield(tmp_path, spec, progress=False)
    files = sorted(
        p.relative_to(tmp_path / "raw").as_posix() for p in (tmp_path / "raw").rglob("*.*")
    )
    assert files == sorted(spec.planned_files()["raw"])
    assert any(" " in f for f in files)
    assert not any(re.search(r"[A-P]\d{2}", f) for f in files)
    cells = pd.read_csv(tmp_path / "truth" / "cells.tsv", sep="\t")
    assert set(cells.loc[cells.condition == "mixed", "cls"]) == {"apoptosis", "pyroptosis", "other"}
    # classes differ in size on the true masks
    areas = {}
    for im in spec.images().itertuples():
        lab = tifffile.imread(tmp_path / "truth" / im.plate / f"{im.image}.cells.tif")
        if im.condition != "mixed":
            areas[im.condition] = np.bincount(lab.ravel())[1:].mean()
    assert areas["apoptosis"] < areas["other"] < areas["pyroptosis"]


def test_every_scenario_writes_exactly_its_planned_outputs(tmp_path):
    """What the demo_plate rule declares (planned_outputs) is what generate_scenario writes."""
    from hcsflow.demo.scenarios import generate_scenario, planned_outputs, spec_from_config

    configs = {
        "coculture": dict(n_plates=1, wells_per_condition=1, n_fields=1, image_size=128),
        "celldeath": dict(
            n_plates=2,
            n_fields=1,
            image_size=128,
            celldeath=dict(
                cells_per_field=8, compounds_per_class=1, concentrations=3, control_wells=1
            ),
        ),
        "brightfield": dict(
            n_fields=1,
            image_size=128,
            brightfield=dict(naming="files", images_per_class=1, mixed_images=1),
        ),
    }
    for scenario, cfg in configs.items():
        out = tmp_path / scenario
        spec = spec_from_config({"scenario": scenario, "seed": 3, **cfg})
        assert (
            spec.__class__.__name__
            == {
                "coculture": "DemoSpec",
                "celldeath": "CellDeathSpec",
                "brightfield": "BrightfieldSpec",
            }[scenario]
        )
        generate_scenario(out, spec, progress=False)
        plan = planned_outputs(spec)
        planned = sorted(
            [f"raw/{f}" for f in plan["raw"]]
            + [f"gt/{f}" for f in plan["gt"]]
            + [f"truth/{f}" for f in plan["truth"]]
            + plan["tables"]
        )
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert written == planned, scenario
    try:
        spec_from_config({"scenario": "zebrafish"})
    except ValueError as exc:
        assert "demo.scenario" in str(exc) and "celldeath" in str(exc)
    else:
        raise AssertionError("an unknown scenario must be refused")
