"""Rule train_classifier: preprocessing + a scikit-learn classifier fitted on the training split;
predictions of every unit in the predictions contract."""

from hcsflow.runner import limit_threads, rule_logging

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    import pandas as pd

    from hcsflow.classical import (
        importance_figure,
        importances,
        model_info,
        predict_features,
        save_model,
        select_config_columns,
        train_model,
    )
    from hcsflow.io import save_figure, write_table
    from hcsflow.trainset import attach_features

    cfg, spec, name = snakemake.params.classify, snakemake.params.spec, snakemake.wildcards.model
    unit = cfg.get("unit", "cell")
    seed = cfg.get("split", {}).get("seed", 0)
    units = pd.read_parquet(snakemake.input.units)
    features = pd.read_parquet(snakemake.input.features)
    fcfg = {**cfg.get("features", {}), **(spec.get("features") or {})}
    cols = select_config_columns(features.columns, fcfg)
    log.info("%s: %s with %s; %d candidate feature columns", name, spec["estimator"],
             spec.get("params") or {}, len(cols))
    table = attach_features(units, features, cols, unit, cfg.get("field_aggregate", "median"))
    train = table[(table["split"] == "train") & table["sampled"]]
    log.info("training on %d of %d units: %s", len(train), len(table),
             train.groupby("class").size().to_dict())
    classes = list(cfg["classes"])
    bundle = train_model(train, cols, classes, estimator=spec["estimator"],
                         params=spec.get("params"), preprocessing=cfg.get("preprocessing"),
                         seed=seed, threads=snakemake.threads)
    log.info("%d features after selection (%s), normalisation %s",
             len(bundle["preprocessing"]["features"]),
             bundle["preprocessing"]["config"]["feature_select"],
             bundle["preprocessing"]["config"]["normalize"])
    preds = predict_features(bundle, table)
    for split, g in preds.groupby("split"):
        log.info("%s: unit accuracy %.4f (%d units)", split,
                 (g["pred_class"] == g["true_class"]).mean(), len(g))
    info = model_info(bundle, name=name, unit=unit, field_aggregate=cfg.get("field_aggregate", "median"),
                      training={"n_train_units": int(len(train)), "n_units": int(len(table)),
                                "seed": seed, "split": cfg.get("split", {}),
                                "train_per_class": train.groupby("class").size().to_dict()})
    imp = importances(bundle, cfg.get("importances_top", 20))
    fig = importance_figure(imp, f"{name} ({spec['estimator']}): top {len(imp)} features")
    write_table(preds, snakemake.output.predictions)
    write_table(imp, snakemake.output.importances)
    save_figure(fig, snakemake.output.importances_png)
    save_model(bundle, info, snakemake.output.model, snakemake.output.model_json)
