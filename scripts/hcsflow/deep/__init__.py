"""Deep classifiers: timm CNNs and ViTs on crops or whole fields, trained with cross-entropy or
SupCon + cross-entropy on plate-aware batches; embeddings with UMAP and plate mixing; GradCAM.

Modules: ``config`` (checks of ``deep.models``), ``data`` (inputs, normalisation, augmentation),
``models`` (timm by name, local pretrained weights), ``losses``, ``sampling`` (plate-aware
batches), ``train`` (seeded, resumable training), ``predict`` (saved model -> the predictions
contract), ``embed`` (embeddings, UMAP, plate mixing), ``gradcam`` (montages). Torch is imported
only when a function needs it.

Contract: ``train_deep`` writes ``results/classify/{model}/predictions.parquet`` in the same
columns as the classical models (docs/ARCHITECTURE.md), plus ``model.pt`` / ``model.json`` that
``hcsflow.predict`` loads.
"""
