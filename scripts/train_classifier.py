"""Rule train_classifier: preprocessing + a scikit-learn classifier fitted on the training split;
predictions of every unit in the predictions contract."""

from hcsflow.runner import limit_threads, rule_logging

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    import pandas as pd

    from hcsflow.classify.classical import (
        importance_figure,
        importances,
        model_info,
        save_model,
        select_config_columns,
        train_on_units,
        training_units,
    )
    from hcsflow.classify.trainset import attach_features, fields_without_cells
    from hcsflow.illumination import record as illumination_record
    from hcsflow.ingest.table import read_image_table
    from hcsflow.ingest.validate import plate_pixel_types
    from hcsflow.io import save_figure, write_table
    from hcsflow.predict.model import input_record

    cfg, spec, name = snakemake.params.classify, snakemake.params.spec, snakemake.wildcards.model
    unit = cfg.get("unit", "cell")
    seed = int(snakemake.params.seed)  # classify.seed (else split.seed) + the repeat number
    units = pd.read_parquet(snakemake.input.units)
    features = pd.read_parquet(snakemake.input.features)
    fcfg = {**cfg.get("features", {}), **(spec.get("features") or {})}
    cols = select_config_columns(features.columns, fcfg)
    log.info(
        "%s: %s with %s; %d candidate feature columns",
        name,
        spec["estimator"],
        spec.get("params") or {},
        len(cols),
    )
    table = attach_features(units, features, cols, unit, cfg.get("field_aggregate", "median"))
    if unit == "field":
        empty = fields_without_cells(units, features)
        if len(empty):
            log.warning(
                "%d field(s) without any cell left out (no features to classify; by split "
                "and class: %s)",
                len(empty),
                empty.groupby(["split", "class"]).size().to_dict(),
            )
    train = training_units(table)
    log.info(
        "training on %d of %d units (seed %d): %s",
        len(train),
        len(table),
        seed,
        train.groupby("class").size().to_dict(),
    )
    classes = list(cfg["classes"])
    bundle, preds = train_on_units(
        table,
        cols,
        classes,
        spec,
        preprocessing=cfg.get("preprocessing"),
        seed=seed,
        threads=snakemake.threads,
    )
    log.info(
        "%d features after selection (%s), normalisation %s",
        len(bundle["preprocessing"]["features"]),
        bundle["preprocessing"]["config"]["feature_select"],
        bundle["preprocessing"]["config"]["normalize"],
    )
    for split, g in preds.groupby("split"):
        log.info(
            "%s: unit accuracy %.4f (%d units)",
            split,
            (g["pred_class"] == g["true_class"]).mean(),
            len(g),
        )
    info = model_info(
        bundle,
        name=name,
        unit=unit,
        field_aggregate=cfg.get("field_aggregate", "median"),
        training={
            "n_train_units": int(len(train)),
            "n_units": int(len(table)),
            "seed": seed,
            "split": cfg.get("split", {}),
            "train_per_class": train.groupby("class").size().to_dict(),
        },
    )
    pixel_types = plate_pixel_types(
        read_image_table(snakemake.input.images), sorted(set(train["Metadata_Plate"].astype(str)))
    )
    info["inputs"] = input_record(
        pixel_types=pixel_types.values(),
        pixel_size_um=snakemake.params.pixel_size_um,
        illumination=illumination_record(
            snakemake.params.illumination, snakemake.input.illumination
        ),
    )
    log.info("training images: %s", info["inputs"])
    imp = importances(bundle, cfg.get("importances_top", 20))
    fig = importance_figure(imp, f"{name} ({spec['estimator']}): top {len(imp)} features")
    write_table(preds, snakemake.output.predictions)
    write_table(imp, snakemake.output.importances)
    save_figure(fig, snakemake.output.importances_png)
    save_model(bundle, info, snakemake.output.model, snakemake.output.model_json)
