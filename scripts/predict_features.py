"""Rule predict_features: a classical model on the feature rows of one image, in batches; the
image's predictions with their boxes, and the boxed overlay."""

from hcsflow.features import image_metadata
from hcsflow.ingest import read_image_table
from hcsflow.io import read_image, read_labels, read_table, write_table
from hcsflow.predict import (
    check_compatible,
    image_outputs,
    load_model_info,
    predict_batches,
    sklearn_predictor,
    write_png,
)
from hcsflow.runner import limit_threads, rule_logging

with rule_logging(snakemake) as log:
    inp, out, par, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    limit_threads(snakemake.threads)
    info = load_model_info(inp.model)
    features = read_table(inp.features)
    check_compatible(info, par.channels, feature_columns=features.columns,
                     where=f"the features of {wc.plate}/{wc.image} ({inp.features})")
    meta = features[[c for c in features.columns if c.startswith("Metadata_")]]
    pred = predict_batches(sklearn_predictor(info), features, meta,
                           int(par.settings.get("batch_size", 256)), log)
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
