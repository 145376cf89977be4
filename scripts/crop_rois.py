"""Rule crop_rois: crop every cell of a batch of images into one array file plus an index table
per image and configured crop type: ``{output[crop_type]}/{image}.npz`` and ``.index.parquet``."""

from hcsflow.batches import batch_fields
from hcsflow.cells.align import read_field
from hcsflow.cells.crops import crop_rois, save_crops
from hcsflow.cells.features import image_metadata
from hcsflow.failures import BatchFailures, empty_field, for_each_image, read_upstream
from hcsflow.illumination import listed_functions, load_correction
from hcsflow.ingest.table import read_image_table
from hcsflow.ingest.validate import plate_pixel_types
from hcsflow.io import write_table
from hcsflow.runner import job_files, rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    names, image_files, cells_files, nuclei_files = batch_fields(par.fields)
    crop_files = {ct: job_files(out[ct], names, ".npz") for ct in par.crop_types}
    index_files = {ct: job_files(out[ct], names, ".index.parquet") for ct in par.crop_types}
    image_table = read_image_table(inp.images)
    fix_illumination = load_correction(listed_functions(inp.illumination))

    def pixel_type():
        return plate_pixel_types(image_table, [snakemake.wildcards.plate]).get(
            snakemake.wildcards.plate
        )

    def one(i, name):
        image, cells, nuclei, pairing = read_field(
            image_files[i],
            cells_files[i],
            nuclei_files[i],
            par.channels,
            par.project_z,
            par.min_nucleus_overlap,
        )
        image = fix_illumination(image)
        return crop(i, name, image, cells, nuclei, pairing)

    def crop(i, name, image, cells, nuclei, pairing):
        meta = image_metadata(image_table, snakemake.wildcards.plate, name)
        done = []
        for crop_type in par.crop_types:
            settings = dict(par.crops.get(crop_type, {}))
            crops, index, dropped = crop_rois(
                image, cells, nuclei, crop_type, border=par.crops["border"], **settings
            )
            log.info(
                "%s %s crops: %d of shape %s; padded %d; dropped %s; pairing %s",
                name,
                crop_type,
                len(crops),
                crops.shape[1:],
                int(index["padded"].sum()),
                dropped["reason"].value_counts().to_dict(),
                pairing,
            )
            # Index table keyed like the feature tables: row crop_row of the array is this object.
            table = index.rename(columns={"label": "Metadata_ObjectNumber"})
            for k, v in meta.items():
                table[k] = [v] * len(table)
            table["Metadata_CropType"] = crop_type
            meta_cols = [*meta.keys(), "Metadata_ObjectNumber", "Metadata_CropType"]
            table = table[meta_cols + [c for c in table.columns if c not in meta_cols]]
            save_crops(
                crop_files[crop_type][i],
                crops,
                index,
                dropped,
                par.channels,
                compress=par.crops["compress"],
            )
            write_table(table, index_files[crop_type][i])
            done.append(f"{crop_type} {len(crops)}")
        return ", ".join(done)

    def write_empty(i, name):
        # crop files and index tables with no crops (the shapes and columns of every image)
        image, cells, nuclei = empty_field(
            cells_files[i] or nuclei_files[i], len(par.channels), pixel_type()
        )
        crop(i, name, image, cells, nuclei, "none")

    failures = BatchFailures(
        "crop_rois",
        par.on_image_error,
        read_upstream(names, None, [cells_files, nuclei_files]),
        write_empty,
    )
    for_each_image(names, one, log, failures)
    write_table(failures.table(snakemake.wildcards.plate), out.failed)
