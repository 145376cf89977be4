"""Rule predict_crops: a deep model on the crops of every image of one plate, in batches; one row
per segmented cell (results.csv columns + predictions contract)."""

import pandas as pd

from hcsflow.cells.crops import load_crops
from hcsflow.cells.features import image_metadata
from hcsflow.ingest.table import read_image_table
from hcsflow.ingest.validate import plate_pixel_types
from hcsflow.io import read_labels, read_table, write_table
from hcsflow.predict.cells import predict_plate, select_channels
from hcsflow.predict.model import (
    check_compatible,
    check_run_inputs,
    load_model_info,
    model_input,
    torch_predictor,
)
from hcsflow.qc import excluded_images
from hcsflow.runner import limit_threads, rule_logging, torch_device

with rule_logging(snakemake) as log:
    inp, out, par, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    limit_threads(snakemake.threads)
    info = load_model_info(inp.model)
    table = read_image_table(inp.images)
    # the same check as at parse time, now that every image exists (a demo plate did not then)
    for accepted in check_run_inputs(
        info,
        plate_pixel_types(table, [wc.plate]).values(),
        crops_cfg=par.crops,
        pixel_size_um=par.pixel_size_um,
        illumination_method=par.illumination_method,
        accept=par.settings.get("accept_mismatch") or [],
        where=f"the images of {wc.plate}",
    ):
        log.warning("accepted (predict.accept_mismatch): %s", accepted)

    def load_inputs(entry):
        data = load_crops(entry["crops"])
        channels = [str(c) for c in data["channels"]]
        check_compatible(
            info,
            channels,
            crop_types=[model_input(info)],
            where=f"the crops of {wc.plate}/{entry['image']} ({entry['crops']})",
        )
        index = pd.read_parquet(entry["index"])
        meta = index[
            [c for c in index.columns if c.startswith("Metadata_") and c != "Metadata_CropType"]
        ]
        return select_channels(data["crops"], channels, info["channels"]), meta

    images = [
        {
            "plate": wc.plate,
            "image": im,
            "filename": name,
            "crops": crops,
            "index": index,
            "metadata": image_metadata(table, wc.plate, im),
            "cells": lambda p=cells: read_labels(p),
        }
        for im, name, crops, index, cells in zip(
            par.images, par.names, par.crop_files, par.index_files, par.cell_masks, strict=True
        )
    ]
    # images qc.exclude drops (qc.parquet) are not predicted: failed.tsv lists them
    dropped = excluded_images(read_table(inp.qc))
    if dropped:
        log.warning(
            "not predicted, excluded by qc.exclude: %s", ", ".join(sorted(i for _, i in dropped))
        )
        images = [e for e in images if (str(e["plate"]), str(e["image"])) not in dropped]
    predictor = torch_predictor(info, device=torch_device(logger=log))
    cells = predict_plate(
        images,
        load_inputs,
        predictor,
        info,
        par.class_map,
        batch_size=int(par.settings.get("batch_size", 256)),
        box_padding=int(par.settings.get("box_padding", 5)),
        log=log,
    )
    write_table(cells, out.cells)
