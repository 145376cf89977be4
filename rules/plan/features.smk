# Features (rules/features.smk).


def plate_feature_tables(wildcards):
    """The per-image feature tables of one plate (merge_plate_features)."""
    table = IMAGES[IMAGES["plate"] == wildcards.plate]
    return per_image(f"{RESULTS}/{{plate}}/features/{{image}}.parquet", table=table)


def features_targets():
    return [f"{RESULTS}/features.parquet"]
