# OME-Zarr export (rules/export.smk): whether it runs, which predictions colour the cells, the
# staging directory of each batch job and its plate's inputs. Library: hcsflow.export.ome_zarr.

from hcsflow.export.ome_zarr import ExportError as _ExportError
from hcsflow.export.ome_zarr import prediction_sources as _export_sources

EXPORT = config["export"]
EXPORT_ON = bool(EXPORT["ome_zarr"])
try:
    # the run's classifiers (their first run: repeats are seeds of one model) and prediction models
    EXPORT_PREDICTIONS, EXPORT_COLOR_ORDER = _export_sources(
        [*CLASSICAL_MODELS, *DEEP_MODELS],
        list(_PRED_MODELS),
        wanted=EXPORT["models"],
        color_by=EXPORT["color_by"],
        classify_dir=CLASSIFY_DIR,
        predict_dir=f"{RESULTS}/predict",
    )
except _ExportError as exc:
    raise WorkflowError(str(exc)) from None

# one standalone image per field, per batch job (temporary: the plate links them into wells)
EXPORT_STAGING = f"{RESULTS}/{{plate}}/export/{{batch}}.zarr"


def export_plate_inputs(wildcards):
    """Every staging directory of ``{plate}``'s export jobs."""
    return BATCHES.paths(EXPORT_STAGING, wildcards.plate)


_PIXEL_SIZES = dict(zip(zip(IMAGES["plate"], IMAGES["image"]), IMAGES.get("pixel_size_um", [])))


def export_pixel_size_of(plate, image):
    """One image's pixel size (µm; None where unknown)."""
    size = _PIXEL_SIZES.get((plate, image))
    return None if size is None or size != size else float(size)


def export_targets():
    return [f"{RESULTS}/{p}.ome.zarr" for p in PLATES] if EXPORT_ON else []
