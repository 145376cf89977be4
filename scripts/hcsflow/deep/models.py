"""timm models by name, with ``in_chans`` = the channels and ``num_classes`` = the classes.

Pretrained weights come ONLY from a local file (``deep.models.<m>.pretrained``): jobs never
download. Loading one keeps every backbone weight, adapts the first convolution to ``in_chans``
(timm's ``adapt_input_conv``: for any channel count, CellDeathPred's stem adaptation worked for 4
only) and leaves the NEW classifier head as initialised. A fine-tuned model is reloaded from its
own ``model.pt`` with its head (Deeptosis deleted the head weights before loading, so predictions
came from a random head).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from .data import DeepInputError

FETCH_HINT = (
    'download it once on a machine with internet, e.g. `python -c "import timm, torch; '
    "m = timm.create_model('{arch}', pretrained=True); torch.save(m.state_dict(), '{path}')\"`, "
    "copy it there, or set pretrained: null to train from scratch"
)


def is_vit(model) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def _patch_size(architecture: str):
    m = re.search(r"patch(\d+)", architecture)
    return int(m.group(1)) if m else None


def check_architecture(architecture: str, image_size: int | None = None) -> None:
    """Unknown timm names and image sizes a ViT's patch does not divide: a clear error."""
    import timm

    if architecture not in timm.list_models():
        close = difflib.get_close_matches(architecture, timm.list_models(), n=5)
        raise DeepInputError(
            f"deep model architecture {architecture!r} is not a timm model name; close names: "
            f"{close or 'none'} (full list: python -c 'import timm; print(timm.list_models())')"
        )
    patch = _patch_size(architecture)
    if patch and image_size and image_size % patch:
        raise DeepInputError(
            f"image_size {image_size} is not divisible by the patch size {patch} of {architecture}; "
            f"set deep.models.<model>.image_size to a multiple of {patch}"
        )


def create_model(
    architecture: str,
    in_chans: int,
    num_classes: int,
    image_size: int | None = None,
    pretrained: str | None = None,
    drop_rate: float = 0.0,
):
    """A timm model (``pretrained``: a local state-dict file or None)."""
    import timm

    check_architecture(architecture, image_size)
    if pretrained is not None and not Path(pretrained).is_file():
        raise DeepInputError(
            f"pretrained weights file {pretrained} does not exist; "
            + FETCH_HINT.format(arch=architecture, path=pretrained)
        )
    kwargs = dict(
        pretrained=False, in_chans=int(in_chans), num_classes=int(num_classes), drop_rate=drop_rate
    )
    if _patch_size(architecture) and image_size:
        kwargs["img_size"] = int(image_size)
    model = timm.create_model(architecture, **kwargs)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def head_prefix(model) -> str:
    cls = model.pretrained_cfg.get("classifier", "head")
    return cls[0] if isinstance(cls, (list, tuple)) else cls


def load_pretrained(model, path: str) -> list[str]:
    """Backbone weights from ``path`` into ``model``; returns the (new) head's parameter names.

    The file's classifier weights are ignored, the first conv is adapted to the model's
    ``in_chans``; any other missing or unexpected key is an error naming it.
    """
    import torch
    from timm.models import adapt_input_conv

    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    head = head_prefix(model)
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    first = model.pretrained_cfg.get("first_conv")
    own = model.state_dict()
    for name in ([first] if isinstance(first, str) else list(first or [])):
        key = name + ".weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(own[key].shape[1], state[key])
    # ViT position embeddings at another image size
    if (
        "pos_embed" in state
        and "pos_embed" in own
        and state["pos_embed"].shape != own["pos_embed"].shape
    ):
        from timm.layers import resample_abs_pos_embed

        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"],
            new_size=model.patch_embed.grid_size,
            num_prefix_tokens=getattr(model, "num_prefix_tokens", 1),
        )
    bad = [k for k in state if k in own and state[k].shape != own[k].shape]
    if bad:
        raise DeepInputError(
            f"{path}: weights {bad[:5]} do not fit {type(model).__name__} "
            f"(another architecture's file?)"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise DeepInputError(
            f"{path} does not match the architecture: missing {missing[:5]}, unexpected "
            f"{list(unexpected)[:5]}; save the state_dict of the same timm model name"
        )
    return [k for k in own if k.startswith(head + ".")]


def freeze_batchnorm(model) -> int:
    """Put every batch-norm layer in eval mode with frozen affine parameters (call after each
    ``model.train()``); returns how many layers."""
    import torch.nn as nn

    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            n += 1
    return n


def forward(model, x):
    """``(logits, embeddings)``: embeddings are the pre-logits features (after pooling)."""
    emb = model.forward_head(model.forward_features(x), pre_logits=True)
    return model.get_classifier()(emb), emb
