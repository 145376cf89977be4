# Features (rules/features.smk). One directory per job (hcsflow.batches):
# results/{plate}/features/{batch}/{image}.parquet

FEATURES_DIR = f"{RESULTS}/{{plate}}/features/{{batch}}"
FEATURES = f"{RESULTS}/{{plate}}/features/{{batch}}/{{image}}.parquet"


def feature_table_of(plate, image):
    """One image's feature table."""
    return BATCHES.image_path(FEATURES, plate, image)


def plate_feature_tables(wildcards):
    """The per-image feature tables of one plate (merge_plate_features reads them; its inputs
    are the jobs' directories)."""
    table = IMAGES[IMAGES["plate"] == wildcards.plate]
    return image_files(FEATURES, table=table)


def features_targets():
    return [f"{RESULTS}/features.parquet"]
