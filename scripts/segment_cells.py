"""Rule segment_cells: whole-cell label masks of a batch of fields (see hcsflow.segment.methods).

The model is loaded once; the fields are segmented one by one and each mask is written as soon
as it is ready (atomically) as ``{output.masks}/{image}.tif`` (members and files:
``params.fields``, see hcsflow.batches.batch_fields; seed masks in its ``nuclei``).
"""

from hcsflow.runner import limit_threads

limit_threads(snakemake.threads)  # before numpy / torch / TensorFlow are imported


from hcsflow import io  # noqa: E402
from hcsflow.batches import batch_fields  # noqa: E402
from hcsflow.failures import for_each_image, mask_failures  # noqa: E402
from hcsflow.illumination import listed_functions, load_correction  # noqa: E402
from hcsflow.runner import job_files, rule_logging  # noqa: E402
from hcsflow.segment import models  # noqa: E402
from hcsflow.segment.methods import field_check_metadata, segment_field  # noqa: E402

with rule_logging(snakemake) as log:
    names, images, _, nuclei = batch_fields(snakemake.params.fields)
    masks = job_files(snakemake.output.masks, names, ".tif")
    fix_illumination = load_correction(listed_functions(snakemake.input.illumination))
    spec = models.ready_target(
        snakemake.params.seg, "cells", snakemake.params.channels, snakemake.params.model, log
    )

    def one(i, name):
        raw = io.read_image(images[i], project_z=snakemake.params.project_z)
        image = fix_illumination(raw)
        seeds = io.read_labels(nuclei[i]) if nuclei[i] else None
        labels, check = segment_field(image, spec, "cells", nuclei=seeds, raw=raw)
        io.write_labels(masks[i], labels, metadata=field_check_metadata(check))
        if check.empty:
            log.warning(
                "%s: EMPTY FIELD, no cells segmented: nothing stands out from the noise "
                "(largest patch %d px < segmentation.empty_field.min_area %d)",
                name,
                check.structure,
                spec.empty_min_area,
            )
            return "empty field"
        return f"{int(labels.max())} cells (method {spec.method})"

    # a failed field gets a 0-object mask marked failed, so later stages skip it
    failures = mask_failures(
        "segment_cells",
        snakemake.params.on_image_error,
        names,
        masks,
        snakemake.input.validated,
        seeds=nuclei,
    )
    for_each_image(names, one, log, failures)
    io.write_table(failures.table(snakemake.wildcards.plate), snakemake.output.failed)
