"""Rule predict_crops: a deep model on the crops of one image, in batches; the image's
predictions with their boxes, and the boxed overlay."""

import pandas as pd

from hcsflow.crops import load_crops
from hcsflow.features import image_metadata
from hcsflow.ingest import read_image_table
from hcsflow.io import read_image, read_labels, write_table
from hcsflow.predict import (
    check_compatible,
    image_outputs,
    load_model_info,
    model_input,
    predict_batches,
    select_channels,
    torch_predictor,
    write_png,
)
from hcsflow.runner import limit_threads, rule_logging, torch_device

with rule_logging(snakemake) as log:
    inp, out, par, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    limit_threads(snakemake.threads)
    info = load_model_info(inp.model)
    data = load_crops(inp.crops)
    crop_channels = [str(c) for c in data["channels"]]
    check_compatible(info, crop_channels, crop_types=[model_input(info)],
                     where=f"the crops of {wc.plate}/{wc.image} ({inp.crops})")
    index = pd.read_parquet(inp.index)
    meta = index[[c for c in index.columns if c.startswith("Metadata_") and c != "Metadata_CropType"]]
    crops = select_channels(data["crops"], crop_channels, info["channels"])
    predictor = torch_predictor(info, device=torch_device(logger=log))
    pred = predict_batches(predictor, crops, meta, int(par.settings.get("batch_size", 256)), log)
    image = read_image(list(inp.image), project_z=par.project_z)
    cells = read_labels(inp.cells)
    meta_row = image_metadata(read_image_table(inp.images), wc.plate, wc.image)
    table, rgb = image_outputs(pred, info, image, cells, list(par.channels), par.settings,
                               par.class_map, plate=wc.plate, image_name=wc.image,
                               filename=list(inp.image)[0], metadata=meta_row)
    log.info("%s: %d segmented cells, %d predicted; classes %s", info["name"], len(table),
             int(table["pred_class"].ge(0).sum()), table["class_name"].value_counts().to_dict())
    write_table(table, out.cells)
    write_png(out.boxed, rgb)
