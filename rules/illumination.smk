# Illumination correction: one flat-field per plate and channel from the plate's own fields, used by
# segmentation, features and crops ((raw - dark) / flat). Library: hcsflow.illumination.
# Docs: docs/segment.md, "Illumination correction".


include: "plan/illumination.smk"


if ILLUM_ON:

    rule estimate_illumination:
        """The flat-field of one channel of one plate, from an evenly spaced sample of its fields."""
        input:
            images=lambda wc: [f for fs in illumination_sample(wc).values() for f in fs],
            validated=VALIDATED,
        output:
            f"{RESULTS}/{{plate}}/illumination/{{channel}}.tif",
        log:
            f"{LOGS}/estimate_illumination/{{plate}}/{{channel}}.log",
        wildcard_constraints:
            channel="|".join(re.escape(c) for c in ILLUM_CHANNELS),
        conda:
            "../envs/illumination.yaml"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=lambda wc, attempt: 30 * attempt,
        params:
            sample=illumination_sample,
            plane=lambda wc: (
                0
                if len(raw_files_of(wc.plate, _ILLUM_PLATE_IMAGES[wc.plate][0])) > 1
                else ILLUM_CHANNELS.index(wc.channel)
            ),
            dark=lambda wc: ILLUM_DARKS[wc.channel],
            illumination=ILLUM,
            project_z=config["images"].get("project_z", "max"),
        script:
            "../scripts/estimate_illumination.py"

    localrules:
        illumination_functions,

    rule illumination_functions:
        """The list of one plate's function files: what batched jobs depend on (one file)."""
        input:
            illumination_files,
        output:
            f"{RESULTS}/{{plate}}/illumination/functions.tsv",
        log:
            f"{LOGS}/illumination_functions/{{plate}}.log",
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=5,
        params:
            channels=ILLUM_CHANNELS,
        script:
            "../scripts/illumination_functions.py"

    rule illumination_figure:
        """One plate's flat-fields side by side (the report's illumination figure)."""
        input:
            illumination_files,
        output:
            report(
                f"{RESULTS}/{{plate}}/illumination/flatfield.png",
                caption="../report/illumination.rst",
                category="Quality control",
                subcategory="illumination",
                labels={"plate": "{plate}"},
            ),
        log:
            f"{LOGS}/illumination_figure/{{plate}}.log",
        conda:
            "../envs/features.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            channels=ILLUM_CHANNELS,
        script:
            "../scripts/illumination_figure.py"
