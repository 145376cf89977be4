"""Segmentation: nuclei and cells per image with a threshold, Cellpose or StarDist; training of
Cellpose / StarDist on true masks; evaluation against true masks.

- ``methods``: preparing inputs (channels, normalisation) and running one method on one image.
- ``models``: pretrained and trained model files (resolution, loading, the explicit fetch).
- ``plan``: parse-time planning (which model file each target needs, split, truth files).
- ``train``: training sets and Cellpose / StarDist training.
- ``evaluate``: average precision at IoU thresholds, pixel F1, counts.

Contract: one label TIFF per image and target, ``results/{plate}/masks/{cells,nuclei}/{batch}/{image}.tif``
(0 background, 1..n objects).
"""
