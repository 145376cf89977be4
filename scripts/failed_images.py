"""Rule failed_images: one plate's failed and empty fields (results/{plate}/failed.tsv), from its
content check, its batched jobs' failure tables and the empty-field calls (hcsflow.failures)."""

from hcsflow.failures import plate_failures
from hcsflow.io import read_table, write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    plate = snakemake.wildcards.plate
    inp = snakemake.input
    table = plate_failures(
        plate,
        read_table(inp.validation),
        [read_table(p) for p in inp.tables],
        read_table(inp.counts[0]) if inp.counts else None,
        snakemake.params.targets,
        read_table(inp.qc),
    )
    write_table(table, snakemake.output[0])
    failed = table[table["status"] == "failed"]
    empty = table[table["status"] == "empty"]
    for rec in failed.itertuples(index=False):
        log.warning("plate %s image %s FAILED at %s: %s", plate, rec.image, rec.stage, rec.error)
    log.info(
        "plate %s: %d image(s) failed, %d empty field call(s), %d excluded by qc.exclude; %s",
        plate,
        failed["image"].nunique(),
        len(empty),
        int((table["status"] == "excluded").sum()),
        snakemake.output[0],
    )
