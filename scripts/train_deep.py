"""Rule train_deep: train one deep model (deep.models.<model>) on the units' crops or fields;
write model.pt (best epoch) + model.json, the predictions contract, history and curves."""

import json

from hcsflow.io import atomic_path, read_table, save_figure, write_table
from hcsflow.runner import limit_threads, rule_logging, torch_device

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    import torch

    from hcsflow.deep.data import load_model_inputs
    from hcsflow.deep.models import check_architecture
    from hcsflow.deep.train import fit_from_units, history_figure, remove_checkpoints
    from hcsflow.illumination import load_plate_corrections
    from hcsflow.illumination import record as illumination_record
    from hcsflow.ingest.table import read_image_table
    from hcsflow.ingest.validate import plate_pixel_types
    from hcsflow.predict.model import input_record

    name, cfg, out = snakemake.wildcards.model, dict(snakemake.params.model), snakemake.output
    check_architecture(cfg["architecture"], cfg.get("image_size"))  # before any data is read
    units = read_table(snakemake.input.units)
    classes = list(snakemake.params.classes or sorted(units["class"].astype(str).unique()))
    images = read_table(snakemake.input.images) if cfg.get("input") == "field" else None
    raw, units, sample_unit, channels = load_model_inputs(
        cfg,
        units,
        list(snakemake.params.crop_files),
        images,
        snakemake.params.channels,
        log,
        fix=load_plate_corrections(snakemake.input.get("illumination", [])),
    )
    device = torch_device(logger=log)
    result = fit_from_units(
        units,
        classes,
        cfg,
        raw,
        sample_unit,
        channels,
        name=name,
        device=device,
        checkpoint_dir=snakemake.params.checkpoints,
        log=log,
    )
    train_plates = sorted(set(units.loc[units["split"] == "train", "Metadata_Plate"].astype(str)))
    pixel_types = plate_pixel_types(read_image_table(snakemake.input.images), train_plates)
    result["spec"]["inputs"] = input_record(
        pixel_types=pixel_types.values(),
        pixel_size_um=snakemake.params.pixel_size_um,
        crop_type=cfg.get("input", "nucleocentric"),
        crops_cfg=snakemake.params.crops,
        illumination=illumination_record(
            snakemake.params.illumination, snakemake.input.get("illumination", [])
        ),
    )
    log.info("training images: %s", result["spec"]["inputs"])
    with atomic_path(out.weights) as tmp:
        torch.save(result["state"], tmp)
    with atomic_path(out.spec) as tmp:
        tmp.write_text(json.dumps(result["spec"], indent=1))
    write_table(result["predictions"], out.predictions)
    write_table(result["history"], out.history)
    save_figure(
        history_figure(result["history"], f"{name} ({cfg['architecture']}, {cfg.get('input')})"),
        out.curves,
    )
    remove_checkpoints(snakemake.params.checkpoints)
    test = result["predictions"][result["predictions"]["split"] == "test"]
    if len(test):
        log.info(
            "test accuracy (units) %.3f on %d units",
            float((test["pred_class"] == test["true_class"]).mean()),
            len(test),
        )
