"""Classification: units (cells or fields) with classes and a split, classical models,
evaluation, well votes and well profiles.

- ``trainset``: the units table (class from the layout or GT labels, split, sampling).
- ``splits``: splits by well, plate or compound, with controls kept whole.
- ``classical``: Random Forest and the other scikit-learn models on the features.
- ``evaluate``: metrics with intervals, class report, confusion and ROC figures, summaries.
- ``voting``: well-level majority votes with a minimum of units per well.
- ``repeats``: run names and seeds of a model trained several times.
- ``profiles``: per-well pycytominer profiles.

Contract: every classifier (classical or deep) writes ``results/classify/{model}/predictions.parquet``
in the same columns; evaluation, votes, plate maps, prediction and the report read only that.
"""
