"""Rule predict_boxed: the boxed overlay of one image (a box per segmented cell in its class
colour on a contrast-stretched grey composite of the field)."""

import numpy as np
import pandas as pd

from hcsflow.io import read_image
from hcsflow.predict.boxed import boxed_image, write_png
from hcsflow.predict.model import load_model_info
from hcsflow.runner import rule_logging

PLACEHOLDER_SHAPE = (256, 256)  # the boxed image of a field whose raw file cannot be read

with rule_logging(snakemake) as log:
    inp, out, par, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    info = load_model_info(inp.model)
    results = pd.read_parquet(inp.cells, filters=[("image", "==", wc.image)])
    title = f"{info['name']}  {wc.plate} {wc.image}"
    try:
        image = read_image(list(inp.image), project_z=par.project_z)
    except Exception as exc:  # a failed field (listed in failed.tsv): a placeholder, loudly
        if par.on_image_error == "stop":
            raise
        log.warning("image %s unreadable, boxed image is a blank placeholder: %s", wc.image, exc)
        image = np.zeros((len(par.channels), *PLACEHOLDER_SHAPE), np.uint8)
        title = f"{title}  FAILED: unreadable (see failed.tsv)"
    rgb = boxed_image(
        image, results, info["classes"], list(par.channels), par.settings, title=title
    )
    log.info("%d boxes; classes %s", len(results), results["class_name"].value_counts().to_dict())
    write_png(out.boxed, rgb)
