"""Rule export_crop_tiffs: one TIFF per ROI, named {image}_{label:04d}.tif (the seed's layout)."""

import shutil
from pathlib import Path

from hcsflow.cells.crops import crops_to_tiffs, load_crops
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    data = load_crops(snakemake.params.crops)
    out_dir = Path(snakemake.output[0])
    # Write into a temporary sibling folder and rename it, so a killed job leaves no half folder.
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    crops_to_tiffs(data["crops"], data["labels"], tmp, snakemake.wildcards.image)
    tmp.rename(out_dir)
    log.info("wrote %d TIFFs to %s", len(data["labels"]), out_dir)
