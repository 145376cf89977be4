"""Deep classifiers (issue 11): timm CNNs / ViTs on crops or whole fields, cross-entropy or
SupCon + cross-entropy with plate-aware batches, embeddings/UMAP, GradCAM.

Modules: ``data`` (inputs, normalisation, augmentation), ``models`` (timm by name, local
pretrained weights), ``losses``, ``sampling`` (plate-aware batches), ``train`` (seeded, resumable
training), ``predict`` (saved model -> predictions contract), ``embed`` (embeddings, UMAP, plate
mixing), ``gradcam`` (montages). Torch is imported only when a function needs it.
"""

from __future__ import annotations


def load_model(path, device=None):
    """See :func:`hcsflow.deep.predict.load_model`."""
    from .predict import load_model as _load

    return _load(path, device=device)


def predict_crops(loaded, crops, meta=None, batch_size: int = 256, channels=None):
    """See :func:`hcsflow.deep.predict.predict_crops`."""
    from .predict import predict_crops as _pc

    return _pc(loaded, crops, meta, batch_size=batch_size, channels=channels)
