"""Prediction on new plates: a saved model applied to the cells of images it has not seen.

- ``model``: ``model.json`` and its weights, compatibility checks against a run's images,
  predictors for feature rows (scikit-learn) and crops (torch).
- ``plan``: which models and plates a run predicts (parse time).
- ``cells``: per-cell predictions in batches, ``results.csv`` rows, per-image summaries.
- ``boxed``: field composites with a box per cell in its class colour.

Contract: ``results/predict/{model}/predictions.parquet`` has the predictions columns of
classification, so votes and plate maps read it unchanged.
"""
