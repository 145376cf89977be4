# Ingest (rules/ingest.smk): the plate layout files and each plate's rows for the content check.

from hcsflow.ingest.table import files_fingerprint


def layout_files():
    """Every layout file of the run (images.layout: one file, or one per plate)."""
    layout = config["images"].get("layout")
    if layout is None:
        return []
    return sorted(set(layout.values())) if isinstance(layout, dict) else [layout]


def plate_layout(wildcards):
    """The layout file of ``{plate}`` (empty list without a layout)."""
    layout = config["images"].get("layout")
    if isinstance(layout, dict):
        layout = layout.get(wildcards.plate, layout.get("*"))
    return [layout] if layout else []


def _plate_table(wildcards):
    """The image table rows of ``{plate}`` (what validate_images checks)."""
    cols = ["plate", "image", "well", "raw_files", "gt_files"]
    return IMAGES.loc[IMAGES["plate"] == wildcards.plate, cols].to_dict("records")


def _plate_files(wildcards):
    rows = _plate_table(wildcards)
    return [f for r in rows for f in r["raw_files"]] + [f for r in rows for f in r["gt_files"]]


def _plate_fingerprint(wildcards):
    """params: the plate's raw and GT files' paths, sizes and times, hashed
    (hcsflow.ingest.table.files_fingerprint): the check reruns when any of them changes. The
    demo's files are outputs of rule demo_plate, declared as inputs instead (_plate_inputs)."""
    if config["demo"]["enabled"]:
        return "demo"
    return files_fingerprint(_plate_files(wildcards))


def _plate_inputs(wildcards):
    """The demo's raw and GT files of ``{plate}`` (made by demo_plate); none for real plates,
    whose files the fingerprint follows."""
    return _plate_files(wildcards) if config["demo"]["enabled"] else []
