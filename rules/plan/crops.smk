# ROI crops (rules/crops.smk).

CROPS = f"{RESULTS}/{{plate}}/crops/{{crop_type}}/{{image}}.{{ext}}"


def crops_targets():
    """One crop file per job (the job makes every crop type), and the TIFF exports if asked."""
    types = config["crops"]["types"]
    out = [
        f
        for layout in (BATCH_LAYOUTS if types else [])
        for f in layout.job_targets(CROPS, crop_type=types[0], ext="npz")
    ]
    if config["crops"]["export_tiff"]:
        for crop_type in types:
            out += per_image(
                f"{RESULTS}/{{plate}}/crops_tiff/{{crop_type}}/{{image}}", crop_type=crop_type
            )
    return out
