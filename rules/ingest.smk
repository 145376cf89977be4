# Demo plate generation and ingest (the source works' "rename", done without touching raw files).

localrules:
    ingest,


if config["demo"]["enabled"]:

    _DEMO_OUT = config["demo"]["out_dir"]

    localrules:
        demo_plate,

    rule demo_plate:
        """Write the synthetic demo plate (deterministic from demo.seed)."""
        output:
            raw=[f"{_DEMO_OUT}/raw/{f}" for f in DEMO_FILES["raw"]],
            gt=[f"{_DEMO_OUT}/gt/{f}" for f in DEMO_FILES["gt"]],
            truth=[f"{_DEMO_OUT}/truth/{f}" for f in DEMO_FILES["truth"]],
            layout=f"{_DEMO_OUT}/layout.xlsx",
            cells=f"{_DEMO_OUT}/truth/cells.tsv",
            shifts=f"{_DEMO_OUT}/truth/shifts.tsv",
        params:
            demo=config["demo"],
        log:
            f"{LOGS}/demo_plate.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=15,
        conda:
            "../envs/ingest.yaml"
        script:
            "../scripts/demo_plate.py"


rule ingest:
    """Parse raw file names into results/images.tsv and canonical links; raw files stay untouched."""
    input:
        raw=[f for files in IMAGES["raw_files"] for f in files],
        gt=[f for files in IMAGES["gt_files"] for f in files],
        layout=layout_files(),
    output:
        table=f"{RESULTS}/images.tsv",
        # one folder of canonical links per plate (and per plate with GT); see raw_files()
        links=[directory(f"{RESULTS}/{plate}/raw") for plate in PLATES],
        gt_links=[directory(f"{RESULTS}/{plate}/gt") for plate in sorted(images_with_gt()["plate"].unique())],
    params:
        results=RESULTS,
        listing=DEMO_FILES,
    log:
        f"{LOGS}/ingest.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/ingest.yaml"
    script:
        "../scripts/ingest.py"
