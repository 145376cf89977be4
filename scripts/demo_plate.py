"""Rule demo_plate: write the synthetic demo plate."""

from pathlib import Path

from hcsflow.demo import DemoSpec, generate
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    out_dir = Path(snakemake.output.layout).parent
    spec = DemoSpec.from_config(snakemake.params.demo)
    summary = generate(out_dir, spec, progress=False)
    log.info("wrote %(images)d images with %(cells)d cells in %(seconds).1f s", summary)
