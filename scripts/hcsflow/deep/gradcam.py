"""GradCAM montages (pytorch-grad-cam): N units per class, the class-activation map of the true
class over a colour composite of the channels. CNNs: the last feature stage (ResNet ``layer4``, EfficientNet's head conv); ViTs: the last
block's first norm with a reshape transform (tokens -> patch grid, prefix tokens dropped)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .models import is_vit

# channel colours of the composite: 1st blue (usually the nuclear stain), then green, red, ...
COLOURS = [(0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (0, 1, 1), (1, 1, 0)]


def target_layers(model, image_size: int | None = None, min_grid: int = 4) -> list:
    """The layer GradCAM reads. CNN: the deepest feature stage whose map is at least
    ``min_grid`` px wide at ``image_size`` (at 32 px a ResNet's last stage is 1 x 1, and a 1 x 1
    map carries no location)."""
    import torch.nn as nn

    if is_vit(model):
        return [model.blocks[-1].norm1]
    info = list(getattr(model, "feature_info", None) or [])
    if image_size and info:
        fine = [f for f in info if image_size // f["reduction"] >= min_grid]
        if fine and fine[-1] is not info[-1]:
            return [model.get_submodule(fine[-1]["module"])]
    if hasattr(model, "conv_head") and hasattr(model, "bn2"):  # EfficientNet: last conv + BN/act
        return [model.bn2]
    if info:  # timm CNNs: the last feature stage (resnet: layer4)
        return [model.get_submodule(info[-1]["module"])]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__}: no Conv2d layer for GradCAM")
    return [convs[-1]]


def vit_reshape_transform(model):
    grid = model.patch_embed.grid_size
    n_prefix = getattr(model, "num_prefix_tokens", 1)

    def reshape(t):
        t = t[:, n_prefix:, :]
        return t.reshape(t.size(0), grid[0], grid[1], t.size(2)).permute(0, 3, 1, 2)

    return reshape


def compute_cams(model, x, targets) -> np.ndarray:
    """``(B, H, W)`` maps in [0, 1] of the classes ``targets`` for the batch ``x``."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    reshape = vit_reshape_transform(model) if is_vit(model) else None
    layers = target_layers(model, image_size=int(x.shape[-1]))
    with GradCAM(model=model, target_layers=layers, reshape_transform=reshape) as cam:
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.nan_to_num(out)


def composite(x: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> RGB ``(H, W, 3)`` in [0, 1], each channel stretched to its 1-99.5 %."""
    rgb = np.zeros(x.shape[1:] + (3,))
    for c in range(x.shape[0]):
        ch = x[c].astype(float)
        lo, hi = np.percentile(ch, [1, 99.5])
        ch = np.clip((ch - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb += ch[..., None] * np.asarray(COLOURS[c % len(COLOURS)], float)
    return np.clip(rgb, 0, 1)


def pick_units(
    predictions: pd.DataFrame, classes, n_per_class: int, seed: int = 0, split: str = "test"
) -> pd.DataFrame:
    """Up to ``n_per_class`` units of each true class, from ``split`` (other splits when it has
    too few), seeded; the returned frame keeps the original index."""
    parts = []
    for c in classes:
        rows = predictions[predictions["true_class"] == c]
        first = rows[rows["split"] == split]
        rest = rows[rows["split"] != split]
        n1 = min(n_per_class, len(first))
        pick = first.sample(n1, random_state=seed) if n1 else first.iloc[:0]
        n2 = min(n_per_class - n1, len(rest))
        if n2:
            pick = pd.concat([pick, rest.sample(n2, random_state=seed)])
        parts.append(pick)
    return pd.concat(parts) if parts else predictions.iloc[:0]


def montage_figure(
    images: np.ndarray,
    cams: np.ndarray,
    picked: pd.DataFrame,
    classes,
    n_per_class: int,
    title: str = "",
):
    """Rows = classes; per unit the composite and the CAM overlay side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pytorch_grad_cam.utils.image import show_cam_on_image

    n_cols = max(1, n_per_class) * 2
    fig, axes = plt.subplots(
        len(classes), n_cols, figsize=(1.6 * n_cols, 2.1 * len(classes)), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    row_pos = {c: 0 for c in classes}
    for i, (_, unit) in enumerate(picked.iterrows()):
        r = list(classes).index(unit["true_class"])
        j = row_pos[unit["true_class"]]
        row_pos[unit["true_class"]] += 1
        rgb = composite(images[i])
        over = show_cam_on_image(rgb.astype(np.float32), cams[i], use_rgb=True, image_weight=0.55)
        axes[r, 2 * j].imshow(rgb)
        axes[r, 2 * j + 1].imshow(over)
        ok = unit["pred_class"] == unit["true_class"]
        axes[r, 2 * j].set_title(f"{unit['true_class']}", fontsize=7)
        axes[r, 2 * j + 1].set_title(
            f"pred {unit['pred_class']} {unit['confidence']:.2f}",
            fontsize=7,
            color="black" if ok else "red",
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
