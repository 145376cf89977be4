# ROI crops (rules/crops.smk). One directory per job and crop type (hcsflow.batches):
# results/{plate}/crops/{crop_type}/{batch}/{image}.npz and {image}.index.parquet

CROPS_DIR = f"{RESULTS}/{{plate}}/crops/{{crop_type}}/{{batch}}"
CROPS = f"{RESULTS}/{{plate}}/crops/{{crop_type}}/{{batch}}/{{image}}.{{ext}}"


def crop_file_of(plate, image, crop_type, ext="npz"):
    """One image's crop array (``ext`` npz) or index table (``index.parquet``)."""
    return BATCHES.image_path(CROPS, plate, image, crop_type=crop_type, ext=ext)


def crops_targets():
    """The TIFF exports, if asked (crop jobs are in the plan through their failure tables, which
    each plate's failed.tsv reads: qc_targets)."""
    types = config["crops"]["types"]
    out = []
    if config["crops"]["export_tiff"]:
        for crop_type in types:
            out += per_image(
                f"{RESULTS}/{{plate}}/crops_tiff/{{crop_type}}/{{image}}", crop_type=crop_type
            )
    return out
