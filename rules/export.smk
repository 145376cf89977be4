# OME-Zarr export (export.ome_zarr): each plate as an NGFF HCS plate, results/{plate}.ome.zarr,
# with raw channels, cell and nucleus labels coloured by predicted class and per-cell tables.
# Library: hcsflow.export.ome_zarr. Docs: docs/usage.md, "Browse a plate (OME-Zarr)".


include: "plan/export.smk"


if EXPORT_ON:

    for _L in BATCH_LAYOUTS:

        rule:
            """A batch of fields as standalone OME-Zarr images (raw channels, labels, cells table)."""
            name:
                _L.rule_name("export_ome_zarr")
            input:
                **batch_masks(_L, analysis_mask_of),
                image=batch_files(_L, raw_files_of),
                features=_L.outputs(_FEATURES),
                predictions=list(EXPORT_PREDICTIONS.values()),
                validated=validated,
            output:
                export_staging(_L),
            log:
                batch_log(_L.rule_name("export_ome_zarr")),
            wildcard_constraints:
                **_L.constraints(),
            conda:
                "../envs/export.yaml"
            threads: 1
            resources:
                mem_mb=lambda wc, attempt: 4000 * attempt,
                runtime=batch_runtime(_L, 1),
            params:
                images=batch_images(_L),
                pixel_sizes=export_pixel_sizes(_L),
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
