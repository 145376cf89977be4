"""Per-well profiles: pycytominer ``aggregate`` (median by default) of the per-cell features.

``results/profiles/wells.parquet``: one row per plate and well, ``Metadata_Plate``,
``Metadata_Well``, the layout annotations (``Metadata_Condition``, one ``Metadata_{Sheet}`` per
extra layout sheet), ``Metadata_Object_Count`` (cells aggregated) and the aggregated features --
the table profiling users (pycytominer / cytominer-eval) expect.
"""

from __future__ import annotations

import pandas as pd

from hcsflow.classify.classical import feature_columns
from hcsflow.classify.trainset import ClassifyError, well_annotations


def well_profiles(
    features: pd.DataFrame, images: pd.DataFrame, *, extra_sheets=(), operation: str = "median"
) -> pd.DataFrame:
    """Aggregate ``features`` (``results/features.parquet``) per plate and well; annotate the
    wells from ``images`` (``results/images.tsv``)."""
    from pycytominer import aggregate

    if operation not in ("median", "mean"):
        raise ClassifyError(
            f"classify.profiles.operation must be median or mean, not {operation!r}"
        )
    cols = feature_columns(features.columns, image_features=False)
    wells = well_annotations(images, extra_sheets)
    if features.empty:
        out = wells[["Metadata_Plate", "Metadata_Well"]].iloc[0:0].copy()
        out["Metadata_Object_Count"] = pd.Series(dtype=int)
        for c in cols:
            out[c] = pd.Series(dtype=float)
    else:
        feats = features[["Metadata_Plate", "Metadata_Well", "Metadata_ObjectNumber", *cols]].copy()
        feats["Metadata_Plate"] = feats["Metadata_Plate"].astype(str)
        out = aggregate(
            feats,
            strata=["Metadata_Plate", "Metadata_Well"],
            features=cols,
            operation=operation,
            compute_object_count=True,
            object_feature="Metadata_ObjectNumber",
        )
    out = wells.merge(out, on=["Metadata_Plate", "Metadata_Well"], how="right")
    meta = [c for c in out.columns if c.startswith("Metadata_")]
    return (
        out[meta + [c for c in out.columns if c not in meta]]
        .sort_values(["Metadata_Plate", "Metadata_Well"])
        .reset_index(drop=True)
    )
