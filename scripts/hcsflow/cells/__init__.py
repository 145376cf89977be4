"""Cells: what is measured per segmented cell.

- ``align``: GT-to-CP alignment (phase correlation of the nuclear stains), nucleus-cell pairing,
  filtering of cells without a match -> aligned masks and per-cell GT intensities.
- ``crops``: ROI crops around each cell (nucleocentric / cell / whole types, masked or not).
- ``features``: per-cell intensity, shape and texture features (``texture``: GLCM, Haralick).
- ``labels``: GT labels per cell from the aligned GT intensities (thresholds per stain).

Contracts: ``results/{plate}/features/{batch}/{image}.parquet`` -> ``results/features.parquet``,
``results/{plate}/crops/{type}/{batch}/{image}.npz`` + ``.index.parquet``, ``results/labels.parquet``.
"""
