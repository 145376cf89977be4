"""Rule segment_cells[_N]: whole-cell label masks of a batch of fields (see hcsflow.segment.methods).

The model is loaded once; the fields are segmented one by one and each mask is written as soon
as it is ready (atomically), in the order of ``snakemake.params.images`` = ``output.masks``.
"""

from hcsflow.runner import limit_threads

limit_threads(snakemake.threads)  # before numpy / torch / TensorFlow are imported


from hcsflow import io  # noqa: E402
from hcsflow.batches import split_per_image  # noqa: E402
from hcsflow.failures import for_each_image, mask_failures  # noqa: E402
from hcsflow.illumination import load_correction  # noqa: E402
from hcsflow.runner import rule_logging  # noqa: E402
from hcsflow.segment import models  # noqa: E402
from hcsflow.segment.methods import field_check_metadata, segment_field  # noqa: E402

with rule_logging(snakemake) as log:
    names = list(snakemake.params.images)
    images = split_per_image(snakemake.input.images, len(names), "input.images")
    nuclei = (
        split_per_image(snakemake.input.nuclei, len(names), "input.nuclei")
        if snakemake.input.nuclei
        else [[] for _ in names]
    )
    fix_illumination = load_correction(snakemake.input.illumination)
    spec = models.ready_target(
        snakemake.params.seg, "cells", snakemake.params.channels, snakemake.params.model, log
    )

    def one(i, name):
        raw = io.read_image(images[i], project_z=snakemake.params.project_z)
        image = fix_illumination(raw)
        seeds = io.read_labels(nuclei[i][0]) if nuclei[i] else None
        labels, check = segment_field(image, spec, "cells", nuclei=seeds, raw=raw)
        io.write_labels(snakemake.output.masks[i], labels, metadata=field_check_metadata(check))
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
        snakemake.output.masks,
        snakemake.input.validated,
        seeds=[n[0] if n else None for n in nuclei],
    )
    for_each_image(names, one, log, failures)
    io.write_table(failures.table(snakemake.wildcards.plate), snakemake.output.failed)
