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
_EXPORT_STAGING = f"{RESULTS}/{{{{plate}}}}/export/{{rule}}/{{{{batch}}}}.zarr"
EXPORT_RULES = {}  # rule name -> layout, filled as the batched rules are defined


def export_staging(layout):
    """Output: the staging directory of a job of ``layout``'s export rule."""
    name = layout.rule_name("export_ome_zarr")
    EXPORT_RULES[name] = layout
    return directory(temp(_EXPORT_STAGING.format(rule=name)))


def export_plate_inputs(wildcards):
    """Every staging directory of ``{plate}``'s export jobs."""
    return [
        path
        for name, layout in sorted(EXPORT_RULES.items())
        for path in layout.batch_paths(_EXPORT_STAGING.format(rule=name), wildcards.plate)
    ]


def export_pixel_sizes(layout):
    """params function: the member images' pixel sizes (µm; None where unknown)."""
    sizes = dict(zip(zip(IMAGES["plate"], IMAGES["image"]), IMAGES.get("pixel_size_um", [])))

    def params(wildcards):
        out = []
        for image in layout.members(wildcards.batch):
            size = sizes.get((wildcards.plate, image))
            out.append(None if size is None or size != size else float(size))
        return out

    return params


def export_targets():
    return [f"{RESULTS}/{p}.ome.zarr" for p in PLATES] if EXPORT_ON else []
