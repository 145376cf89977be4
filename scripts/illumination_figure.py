"""Rule illumination_figure: a plate's flat-fields side by side (hcsflow.illumination.figure)."""

from hcsflow import illumination
from hcsflow.io import save_figure
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    flats, darks, metas = illumination.read_functions(snakemake.input)
    fig = illumination.figure(
        flats,
        snakemake.params.channels,
        title=f"{snakemake.wildcards.plate}: flat-field per channel ({metas[0].get('method')}, "
        f"{metas[0].get('n_fields')} fields)"
        + ("" if metas[0].get("applied", True) else ": NOT APPLIED, too few fields"),
    )
    save_figure(fig, snakemake.output[0])
    log.info("darks %s", dict(zip(snakemake.params.channels, darks.tolist(), strict=True)))
