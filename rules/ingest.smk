# Ingest: the demo plates (when demo.enabled), the content check of every raw file, the image
# table and links with canonical names (the source works' "rename", without touching raw files).
# Library: hcsflow.ingest. Docs: docs/ingest.md.


include: "plan/ingest.smk"


localrules:
    ingest,
    plate_validated,
    validate_images,


if config["demo"]["enabled"]:

    _DEMO_OUT = config["demo"]["out_dir"]

    localrules:
        demo_plate,

    rule demo_plate:
        """Write the synthetic plates of demo.scenario (deterministic from demo.seed)."""
        output:
            raw=[f"{_DEMO_OUT}/raw/{f}" for f in DEMO_FILES["raw"]],
            gt=[f"{_DEMO_OUT}/gt/{f}" for f in DEMO_FILES["gt"]],
            truth=[f"{_DEMO_OUT}/truth/{f}" for f in DEMO_FILES["truth"]],
            # truth tables and layout.xlsx (the list depends on demo.scenario)
            tables=[f"{_DEMO_OUT}/{f}" for f in DEMO_FILES["tables"]],
        log:
            f"{LOGS}/demo_plate.log",
        conda:
            "../envs/ingest.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=15,
        params:
            demo=config["demo"],
        script:
            "../scripts/demo_plate.py"


rule validate_images:
    """Check one plate's raw images (readable, channel counts, sizes, pixel type, layout) before
    any job reads them; every per-image job depends on it."""

    # The raw and GT files are not declared (~14,000 per plate were most of the plan's file
    # look-ups): params.files is their fingerprint, so any change to them reruns the check
    # (Snakemake's params trigger), and the check reports missing or unreadable files.
    input:
        demo=_plate_inputs,
        layout=plate_layout,
    output:
        f"{RESULTS}/{{plate}}/validation.tsv",
    log:
        f"{LOGS}/validate_images/{{plate}}.log",
    conda:
        "../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        table=_plate_table,
        files=_plate_fingerprint,
        channels=config["images"]["channels"],
        gt_channels=(config.get("gt") or {}).get("channels", []),
        layout_sheet=config["images"]["layout_sheet"],
        on_bad_file=config["validation"]["on_bad_file"],
    script:
        "../scripts/validate_images.py"


rule plate_validated:
    """A copy of a plate's content check that jobs reading its images depend on (a relay: its
    one input keeps Snakemake's per-consumer producer scan short; see validated())."""
    input:
        f"{RESULTS}/{{plate}}/validation.tsv",
    output:
        f"{RESULTS}/{{plate}}/validation.ok",
    log:
        f"{LOGS}/plate_validated/{{plate}}.log",
    conda:
        "../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=100,
        runtime=5,
    script:
        "../scripts/plate_validated.py"


rule ingest:
    """Parse raw file names into results/images.tsv and canonical links; raw files stay untouched."""
    input:
        # The raw and GT files are inputs of validate_images (ingest follows it): listed here too,
        # every batch job reading images.tsv made Snakemake scan this list (13,824 files for a
        # 384-well plate), seconds of `snakemake -n` (docs/ARCHITECTURE.md, "Batched jobs").
        layout=layout_files(),
        validated=[f"{RESULTS}/{plate}/validation.tsv" for plate in PLATES],
    output:
        table=f"{RESULTS}/images.tsv",
        # one folder of canonical links per plate (and per plate with GT); see raw_files()
        links=[directory(f"{RESULTS}/{plate}/raw") for plate in PLATES],
        gt_links=[
            directory(f"{RESULTS}/{plate}/gt")
            for plate in sorted(images_with_gt()["plate"].unique())
        ],
    log:
        f"{LOGS}/ingest.log",
    conda:
        "../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # the results folder, from the output path (snakemake --lint: no hard-coded prefixes)
        results=lambda wildcards, output: str(Path(output.table).parent),
        listing=DEMO_FILES,
        batch=BATCH,
    script:
        "../scripts/ingest.py"
