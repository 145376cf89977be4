"""hcsflow.deep.models / predict: timm models by name, local pretrained weights with a new head,
channel counts, ViT sizes, frozen batch norm, reload with the trained head, config checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from hcsflow.deep.config import check_models
from hcsflow.deep.data import DeepInputError, Normaliser
from hcsflow.deep.models import check_architecture, create_model, forward, freeze_batchnorm
from hcsflow.deep.predict import load_model, predict_crops

torch.set_num_threads(1)


@pytest.mark.parametrize("in_chans", [1, 3, 4, 5])
def test_any_channel_count_works(in_chans):
    m = create_model("resnet10t", in_chans, 3, 32).eval()
    x = torch.rand(2, in_chans, 32, 32)
    logits, emb = forward(m, x)
    assert logits.shape == (2, 3) and emb.shape == (2, 512)
    assert m.conv1[0].weight.shape[1] == in_chans
    assert torch.allclose(logits, m(x), atol=1e-6)  # embeddings -> head = the model's output


def test_a_small_vit_at_32_px_and_its_embeddings():
    m = create_model("vit_tiny_patch16_224", 4, 2, 32).eval()
    x = torch.rand(3, 4, 32, 32)
    logits, emb = forward(m, x)
    assert emb.shape == (3, 192) and torch.allclose(logits, m(x), atol=1e-6)


def test_local_pretrained_file_loads_the_backbone_and_the_head_is_new(tmp_path):
    src = timm.create_model("resnet10t", in_chans=3, num_classes=1000)
    path = tmp_path / "resnet10t.pth"
    torch.save(src.state_dict(), path)
    torch.manual_seed(0)
    m = create_model("resnet10t", 4, 2, 32, pretrained=str(path))
    sd, ref = m.state_dict(), src.state_dict()
    assert torch.equal(sd["layer1.0.conv1.weight"], ref["layer1.0.conv1.weight"])
    assert sd["conv1.0.weight"].shape[1] == 4  # stem adapted from 3 to 4 channels
    assert sd["fc.weight"].shape == (2, 512)  # new head with our classes ...
    torch.manual_seed(0)
    fresh = create_model("resnet10t", 4, 2, 32)
    assert torch.equal(sd["fc.weight"], fresh.state_dict()["fc.weight"])  # ... as initialised
    # same number of classes as the file: its head is still NOT taken
    src2 = timm.create_model("resnet10t", in_chans=4, num_classes=2)
    torch.save(src2.state_dict(), tmp_path / "two.pth")
    m2 = create_model("resnet10t", 4, 2, 32, pretrained=str(tmp_path / "two.pth"))
    assert not torch.equal(m2.state_dict()["fc.weight"], src2.state_dict()["fc.weight"])
    assert torch.equal(
        m2.state_dict()["layer4.0.conv1.weight"], src2.state_dict()["layer4.0.conv1.weight"]
    )


def test_bad_models_give_clear_errors(tmp_path):
    with pytest.raises(DeepInputError, match="not a timm model name"):
        create_model("resnet_does_not_exist", 3, 2, 32)
    # what rule train_deep checks before reading any data: the message offers close names
    with pytest.raises(
        DeepInputError, match=r"'resnet_nope' is not a timm model name; close names: \[.*resnet"
    ):
        check_architecture("resnet_nope", 32)
    with pytest.raises(DeepInputError, match="does not exist; download it once"):
        create_model("resnet10t", 3, 2, 32, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(DeepInputError, match="not divisible by the patch size 16"):
        create_model("vit_tiny_patch16_224", 3, 2, 40)
    other = timm.create_model("efficientnet_b0", num_classes=2)
    torch.save(other.state_dict(), tmp_path / "eff.pth")
    with pytest.raises(DeepInputError, match="eff.pth"):
        create_model("resnet10t", 3, 2, 32, pretrained=str(tmp_path / "eff.pth"))


def test_frozen_batch_norm_keeps_its_statistics():
    m = create_model("resnet10t", 2, 2, 32)
    m.train()
    assert freeze_batchnorm(m) > 0
    before = {k: v.clone() for k, v in m.state_dict().items() if "running_mean" in k}
    m(torch.rand(4, 2, 32, 32) * 10)
    after = {k: v for k, v in m.state_dict().items() if "running_mean" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for n, p in m.named_parameters() if ".bn" in n or "bn1" in n)


def test_a_saved_model_reloads_with_its_trained_head(tmp_path):
    torch.manual_seed(1)
    m = create_model("resnet10t", 2, 3, 32).eval()
    with torch.no_grad():
        m.fc.weight.mul_(5)  # a "trained" head
    torch.save(m.state_dict(), tmp_path / "model.pt")
    raw = np.random.default_rng(0).integers(0, 500, (5, 2, 20, 20)).astype(np.uint16)
    norm = Normaliser("percentile").fit(raw)
    spec = {
        "kind": "torch",
        "name": "m",
        "classes": ["a", "b", "c"],
        "channels": ["DAPI", "FITC"],
        "in_chans": 2,
        "architecture": "resnet10t",
        "input": "nucleocentric",
        "image_size": 32,
        "normalisation": norm.to_dict(),
    }
    (tmp_path / "model.json").write_text(json.dumps(spec))
    loaded = load_model(tmp_path)
    assert torch.equal(loaded.model.fc.weight, m.fc.weight)
    meta = pd.DataFrame({"Metadata_Plate": ["P"] * 5, "Metadata_ObjectNumber": range(5)})
    pred = predict_crops(loaded, raw, meta, batch_size=2)
    x = loaded.transform(raw, np.arange(5))
    want = torch.softmax(m(x), 1).detach().numpy()
    np.testing.assert_allclose(
        pred[["Prob_a", "Prob_b", "Prob_c"]].to_numpy(), want, rtol=1e-4, atol=1e-6
    )
    assert (pred["split"] == "predict").all() and pred["pred_class"].isin(["a", "b", "c"]).all()
    # channels named: picked by name, in the model's order
    swapped = predict_crops(loaded, raw[:, ::-1], meta, channels=["FITC", "DAPI"])
    np.testing.assert_allclose(swapped["Prob_a"], pred["Prob_a"], rtol=1e-5)


def test_parse_time_checks_of_the_deep_section(tmp_path):
    ok = {"m": {"architecture": "resnet10t", "input": "nucleocentric", "channels": ["DAPI"]}}
    check_models(ok, ["nucleocentric"], ["DAPI", "FITC"])
    cases = [
        ({"m": {"architecture": "resnet10t", "channels": ["GFP"]}}, "channels.*GFP"),
        ({"m": {"architecture": "resnet10t", "input": "bbox"}}, "does not produce.*crops.types"),
        ({"m": {"architecture": "vit_tiny_patch16_224", "image_size": 60}}, "patch size 16"),
        (
            {"m": {"architecture": "resnet10t", "pretrained": str(tmp_path / "x.pth")}},
            "does not exist",
        ),
    ]
    for models, msg in cases:
        with pytest.raises(DeepInputError, match=msg):
            check_models(models, ["nucleocentric"], ["DAPI", "FITC"])
    with pytest.raises(DeepInputError, match="unique"):
        check_models(ok, ["nucleocentric"], ["DAPI"], other_names=["m"])


def test_impossible_training_combinations_are_refused_at_parse_time(tmp_path):
    """freeze_bn on random weights (statistics calibrated once on the random network, then kept
    while the weights change) and class_weights on plate-aware, class-balanced batches (the class
    balance corrected twice) stop the plan; with pretrained weights freeze_bn is accepted."""
    base = {"architecture": "resnet10t", "input": "nucleocentric"}
    with pytest.raises(DeepInputError, match=r"freeze_bn.*pretrained is not set.*freeze_bn: false"):
        check_models({"m": {**base, "freeze_bn": True}}, ["nucleocentric"], ["DAPI"])
    with pytest.raises(DeepInputError, match=r"class_weights.*twice.*plate_aware: false"):
        check_models(
            {
                "m": {
                    **base,
                    "class_weights": True,
                    "batch": {"plate_aware": True, "n_plates": 2, "n_per_class": 4},
                }
            },
            ["nucleocentric"],
            ["DAPI"],
        )
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    check_models(
        {"m": {**base, "freeze_bn": True, "pretrained": str(weights)}}, ["nucleocentric"], ["DAPI"]
    )
    check_models(
        {"m": {**base, "class_weights": True, "batch": {"size": 32}}}, ["nucleocentric"], ["DAPI"]
    )
