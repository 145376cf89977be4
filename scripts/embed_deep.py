"""Rule embed_deep: pre-logits embeddings of every unit with the trained model, UMAP by class and
by plate (seeded), and plate-mixing scores."""

import numpy as np

from hcsflow.io import read_table, save_figure, write_table
from hcsflow.runner import limit_threads, rule_logging, torch_device

with rule_logging(snakemake) as log:
    limit_threads(snakemake.threads)
    from hcsflow.deep.data import load_model_inputs
    from hcsflow.deep.embed import (
        embeddings_table,
        mixing_table,
        umap_2d,
        umap_figure,
        unit_embeddings,
    )
    from hcsflow.deep.predict import load_model
    from hcsflow.deep.train import predict_logits
    from hcsflow.illumination import load_plate_corrections

    name, cfg, out, p = (
        snakemake.wildcards.model,
        dict(snakemake.params.model),
        snakemake.output,
        snakemake.params,
    )
    loaded = load_model(snakemake.input.spec, device=torch_device(logger=log))
    units = read_table(snakemake.input.units)
    images = read_table(snakemake.input.images) if cfg.get("input") == "field" else None
    raw, units, sample_unit, _ = load_model_inputs(
        cfg,
        units,
        list(snakemake.params.crop_files),
        images,
        snakemake.params.channels,
        log,
        fix=load_plate_corrections(snakemake.input.get("illumination", [])),
    )
    _, emb = predict_logits(loaded.model, raw, np.arange(len(raw)), loaded.transform, loaded.device)
    emb = unit_embeddings(emb, sample_unit, len(units))
    log.info("%d embeddings of dimension %d", *emb.shape)
    write_table(embeddings_table(units, emb), out.embeddings)
    plates, classes = units["Metadata_Plate"].astype(str), units["class"].astype(str)
    mixing = mixing_table(emb, plates, classes, units["split"], k=p.umap["k"])
    write_table(mixing, out.mixing)
    log.info("mixing (all units):\n%s", mixing[mixing["class"] == "all"].to_string(index=False))
    xy = umap_2d(
        emb, seed=p.umap["seed"], n_neighbors=p.umap["n_neighbors"], min_dist=p.umap["min_dist"]
    )
    save_figure(
        umap_figure(xy, classes, plates, f"{name}: UMAP of the embeddings", mixing), out.umap
    )
