"""Rule gradcam_deep: GradCAM montage of N units per class (true-class maps) over a colour
composite of the channels."""

import numpy as np

from hcsflow.io import read_table, save_figure
from hcsflow.runner import limit_threads, rule_logging, torch_device

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    from hcsflow.deep.data import load_model_inputs
    from hcsflow.deep.gradcam import compute_cams, montage_figure, pick_units
    from hcsflow.deep.predict import load_model
    from hcsflow.illumination import load_plate_corrections

    name, cfg, out, p = (
        snakemake.wildcards.model,
        dict(snakemake.params.model),
        snakemake.output,
        snakemake.params,
    )
    loaded = load_model(snakemake.input.spec, device=torch_device(logger=log))
    classes = loaded.classes
    preds = read_table(snakemake.input.predictions)
    picked = pick_units(
        preds, classes, p.gradcam["n_per_class"], seed=p.gradcam["seed"], split=p.gradcam["split"]
    )
    keys = [c for c in ("Metadata_Plate", "Metadata_Image", "Metadata_ObjectNumber") if c in picked]
    units = read_table(snakemake.input.units)
    sub = units.merge(picked[keys], on=keys)
    images = read_table(snakemake.input.images) if cfg.get("input") == "field" else None
    raw, sub, sample_unit, _ = load_model_inputs(
        cfg,
        sub,
        list(snakemake.params.crop_files),
        images,
        snakemake.params.channels,
        log,
        fix=load_plate_corrections(snakemake.input.get("illumination", [])),
    )
    first = np.array([np.flatnonzero(sample_unit == i)[0] for i in range(len(sub))], dtype=int)
    picked = sub[keys].merge(picked, on=keys, how="left")
    x = loaded.transform(raw, first, device=loaded.device)
    targets = [classes.index(c) for c in picked["true_class"]]
    cams = compute_cams(loaded.model, x, targets)
    log.info("GradCAM of %d units (%s)", len(picked), picked["true_class"].value_counts().to_dict())
    save_figure(
        montage_figure(
            x.detach().cpu().numpy(),
            cams,
            picked,
            classes,
            p.gradcam["n_per_class"],
            f"{name}: GradCAM of the true class (left: channels, right: map)",
        ),
        out.gradcam,
    )
