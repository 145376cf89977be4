# OME-Zarr export (export.ome_zarr): each plate as an NGFF HCS plate, results/{plate}.ome.zarr,
# with raw channels, cell and nucleus labels coloured by predicted class and per-cell tables.
# Library: hcsflow.export.ome_zarr. Docs: docs/usage.md, "Browse a plate (OME-Zarr)".


include: "plan/export.smk"


if EXPORT_ON:

    rule export_ome_zarr:
        """A batch of fields as standalone OME-Zarr images (raw channels, labels, cells table)."""
        input:
            **batch_mask_inputs(BATCHES, analysis=True),
            features=FEATURES_DIR,
            predictions=list(EXPORT_PREDICTIONS.values()),
            validated=VALIDATED,
        output:
            directory(temp(EXPORT_STAGING)),
        log:
            batch_log("export_ome_zarr"),
        conda:
            "../envs/export.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=batch_runtime(BATCHES, 1),
        params:
            fields=batch_params(
                BATCHES,
                raw=raw_files_of,
                **mask_params(analysis_mask_of),
                features=feature_table_of,
                pixel_sizes=export_pixel_size_of,
            ),
            prediction_keys=list(EXPORT_PREDICTIONS),
            color_order=EXPORT_COLOR_ORDER,
            channels=config["images"]["channels"],
            project_z=config["images"].get("project_z", "max"),
            min_nucleus_overlap=config["alignment"]["min_nucleus_overlap"],
        script:
            "../scripts/export_ome_zarr.py"

    rule export_plate_ome_zarr:
        """One plate's fields linked into an NGFF HCS plate, validated, moved into place."""
        input:
            fields=export_plate_inputs,
            predictions=list(EXPORT_PREDICTIONS.values()),
        output:
            directory(f"{RESULTS}/{{plate}}.ome.zarr"),
        log:
            f"{LOGS}/export_plate_ome_zarr/{{plate}}.log",
        conda:
            "../envs/export.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            color_order=EXPORT_COLOR_ORDER,
            prediction_keys=list(EXPORT_PREDICTIONS),
            channels=config["images"]["channels"],
        script:
            "../scripts/export_plate_ome_zarr.py"
