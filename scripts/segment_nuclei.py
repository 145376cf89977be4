"""Rule segment_nuclei: nucleus label masks of a batch of fields (see hcsflow.segment.methods).

The model is loaded once; the fields (``params.fields``, hcsflow.batches.batch_fields) are segmented
one by one and each mask is written as soon as it is ready (atomically) as
``{output.masks}/{image}.tif``.
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
    names, images, _, _ = batch_fields(snakemake.params.fields)
    masks = job_files(snakemake.output.masks, names, ".tif")
    fix_illumination = load_correction(listed_functions(snakemake.input.illumination))
    spec = models.ready_target(
        snakemake.params.seg, "nuclei", snakemake.params.channels, snakemake.params.model, log
    )

    def one(i, name):
        raw = io.read_image(images[i], project_z=snakemake.params.project_z)
        image = fix_illumination(raw)
        labels, check = segment_field(image, spec, "nuclei", raw=raw)
        io.write_labels(masks[i], labels, metadata=field_check_metadata(check))
        if check.empty:
            log.warning(
                "%s: EMPTY FIELD, no nuclei segmented: nothing stands out from the noise "
                "(largest patch %d px < segmentation.empty_field.min_area %d)",
                name,
                check.structure,
                spec.empty_min_area,
            )
            return "empty field"
        return f"{int(labels.max())} nuclei (method {spec.method})"

    # a failed field gets a 0-object mask marked failed, so later stages skip it
    failures = mask_failures(
        "segment_nuclei",
        snakemake.params.on_image_error,
        names,
        masks,
        snakemake.input.validated,
    )
    for_each_image(names, one, log, failures)
    io.write_table(failures.table(snakemake.wildcards.plate), snakemake.output.failed)
