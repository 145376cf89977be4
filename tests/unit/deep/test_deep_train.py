"""hcsflow.deep.train: the best checkpoint is a real copy, same seed -> same metrics, a killed
run resumes to the same result, bad class lists, the predictions contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hcsflow.deep.data import DeepInputError, Normaliser, Transform
from hcsflow.deep.losses import DeepLoss
from hcsflow.deep.models import create_model
from hcsflow.deep.train import TrainSettings, check_classes, fit_from_units, set_determinism, train

torch.set_num_threads(1)
N = 96


def _data(seed=0):
    """Two classes: class 1 has a bright square in channel 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(N) % 2
    raw = rng.integers(0, 200, (N, 2, 16, 16)).astype(np.uint16)
    raw[y == 1, 0, 4:12, 4:12] += 600
    return raw, y


def _run(
    seed=0, epochs=4, valid_flipped=False, checkpoint_dir=None, on_epoch_end=None, patience=10
):
    raw, y = _data()
    train_idx, valid_idx = np.arange(64), np.arange(64, N)
    valid_y = 1 - y[valid_idx] if valid_flipped else None
    set_determinism(seed)
    model = create_model("resnet10t", 2, 2, 16)
    tf = Transform(Normaliser("percentile").fit(raw, train_idx), 16)
    s = TrainSettings(epochs=epochs, lr=3e-3, batch_size=16, seed=seed, patience=patience)
    return train(
        model,
        DeepLoss("ce"),
        raw,
        y,
        train_idx,
        valid_idx,
        tf,
        s,
        valid_y=valid_y,
        checkpoint_dir=checkpoint_dir,
        fingerprint="t",
        on_epoch_end=on_epoch_end,
    )


def _metrics(history):
    return history.drop(columns=["seconds"])


def test_best_checkpoint_is_a_copy_and_differs_from_the_last_when_validation_peaks_early():
    # validation labels are the opposite of the training labels: the better the model learns, the
    # worse it validates, so the best epoch is the first
    out = _run(valid_flipped=True, epochs=4)
    assert out["best_epoch"] == 1 and len(out["history"]) == 4
    assert out["history"]["valid_loss"].iloc[0] < out["history"]["valid_loss"].iloc[-1]
    differs = [
        k
        for k in out["best_state"]
        if out["best_state"][k].is_floating_point()
        and not torch.equal(out["best_state"][k], out["last_state"][k])
    ]
    assert differs  # best = last was the nucleocentric bug (a reference to state_dict())


def test_same_seed_same_metrics_other_seed_other_metrics():
    a, b, c = _run(seed=3), _run(seed=3), _run(seed=4)
    pd.testing.assert_frame_equal(_metrics(a["history"]), _metrics(b["history"]))
    assert all(torch.equal(a["best_state"][k], b["best_state"][k]) for k in a["best_state"])
    assert not _metrics(a["history"]).equals(_metrics(c["history"]))


def test_a_run_killed_after_epoch_k_resumes_to_the_uninterrupted_result(tmp_path):
    full = _run(epochs=4)

    class Killed(Exception):
        pass

    def kill_after_2(epoch):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _run(epochs=4, checkpoint_dir=tmp_path, on_epoch_end=kill_after_2)
    assert (tmp_path / "last.pt").is_file()
    epochs_run = []
    resumed = _run(epochs=4, checkpoint_dir=tmp_path, on_epoch_end=epochs_run.append)
    assert epochs_run == [3, 4]  # epochs 1-2 came from the checkpoint
    pd.testing.assert_frame_equal(_metrics(resumed["history"]), _metrics(full["history"]))
    assert all(
        torch.equal(resumed["best_state"][k], full["best_state"][k]) for k in full["best_state"]
    )


def test_early_stopping():
    out = _run(valid_flipped=True, epochs=8, patience=2)
    assert len(out["history"]) == 3 and out["best_epoch"] == 1


def _units(split=None):
    raw, y = _data()
    split = (
        split
        if split is not None
        else np.where(np.arange(N) < 64, "train", np.where(np.arange(N) < 80, "valid", "test"))
    )
    return raw, pd.DataFrame(
        {
            "Metadata_Plate": np.where(np.arange(N) % 4 < 2, "P1", "P2"),
            "Metadata_Well": "B02",
            "Metadata_Site": 1,
            "Metadata_Image": "B-02-01",
            "Metadata_ObjectNumber": np.arange(N),
            "class": np.array(["astro", "SHSY5Y"])[y],
            "split": split,
            "sampled": True,
        }
    )


def test_a_class_without_training_units_is_an_error():
    _, units = _units()
    units.loc[(units["class"] == "SHSY5Y") & (units["split"] == "train"), "split"] = "test"
    with pytest.raises(DeepInputError, match=r"\['SHSY5Y'\] have no training units"):
        check_classes(units, ["astro", "SHSY5Y"])
    _, units = _units()
    with pytest.raises(DeepInputError, match="no training units"):
        check_classes(units, ["astro", "SHSY5Y", "neuron"])


def test_fit_from_units_writes_the_predictions_contract_with_the_best_weights(tmp_path):
    raw, units = _units()
    cfg = {
        "architecture": "resnet10t",
        "input": "nucleocentric",
        "image_size": 16,
        "epochs": 3,
        "lr": 3e-3,
        "batch": {"size": 16},
        "loss": "supcon_ce",
        "seed": 0,
    }
    out = fit_from_units(
        units,
        ["astro", "SHSY5Y"],
        cfg,
        raw,
        np.arange(N),
        ["DAPI", "FITC"],
        name="cnn",
        checkpoint_dir=tmp_path / "ck",
    )
    pred = out["predictions"]
    assert len(pred) == N and list(pred.columns[:5]) == list(units.columns[:5])
    assert {"split", "true_class", "pred_class", "confidence", "Prob_astro", "Prob_SHSY5Y"} <= set(
        pred.columns
    )
    np.testing.assert_allclose(pred[["Prob_astro", "Prob_SHSY5Y"]].sum(1), 1, rtol=1e-6)
    assert (pred["true_class"] == units["class"]).all()
    assert all(torch.equal(out["model"].state_dict()[k], out["state"][k]) for k in out["state"])
    spec = out["spec"]
    assert spec["classes"] == ["astro", "SHSY5Y"] and spec["channels"] == ["DAPI", "FITC"]
    assert spec["in_chans"] == 2 and spec["normalisation"]["method"] == "percentile"
    assert spec["best_epoch"] == int(out["history"]["valid_loss"].idxmin()) + 1
    assert "train_supcon" in out["history"]


def test_calibrated_batchnorm_holds_the_statistics_of_the_training_samples():
    from hcsflow.deep.train import calibrate_batchnorm

    raw, _ = _data()
    train_idx = np.arange(20)
    model = create_model("resnet10t", 2, 2, 16)
    tf = Transform(Normaliser("percentile").fit(raw, train_idx), 16)
    bn = model.conv1[1]  # the stem's first batch norm, after conv1[0]
    assert torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))  # random init
    n = calibrate_batchnorm(model, raw, train_idx, tf, TrainSettings(batch_size=32))
    assert n == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        act = model.conv1[0](tf(raw, train_idx))  # one batch of 20: the exact mean / variance
    assert torch.allclose(bn.running_mean, act.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, act.var(dim=(0, 2, 3), unbiased=True), rtol=1e-3)
    assert bn.momentum == 0.1  # restored


def test_more_batches_per_epoch_than_one_pass_holds_make_further_seeded_passes():
    raw, y = _data()
    set_determinism(0)
    model = create_model("resnet10t", 2, 2, 16)
    tf = Transform(Normaliser("percentile").fit(raw, np.arange(64)), 16)
    s = TrainSettings(epochs=1, lr=3e-3, batch_size=16, batches_per_epoch=10, seed=0)
    out = train(
        model,
        DeepLoss("ce"),
        raw,
        y,
        np.arange(64),
        np.arange(64, N),
        tf,
        s,
        train_plates=np.repeat(["P1", "P2"], 32),
        class_names=["a", "b"],
    )
    assert out["batches"]["summary"]["batches"] == 10  # 64 units / 16 = 4 per pass
    assert out["batches"]["summary"]["batch_size"] == [16, 16]
    assert not out["batches"]["plate_aware"]


def test_a_pedestal_of_1000_trains_and_predicts_without_nan(tmp_path):
    """Training-CDF equalisation on fields whose background sits on a camera pedestal of 1,000:
    the loss stays finite in every epoch and every prediction has finite probabilities (a NaN row
    used to be called class 0 without a word)."""
    raw, units = _units()
    raw = raw.astype(np.int32)
    raw[:, :, :, :] = np.where(raw < 150, 1000, raw + 1000)  # most pixels on the pedestal
    cfg = {
        "architecture": "resnet10t",
        "input": "nucleocentric",
        "image_size": 16,
        "epochs": 2,
        "lr": 3e-3,
        "batch": {"size": 16},
        "normalisation": {"method": "equalize"},
        "seed": 0,
    }
    out = fit_from_units(
        units,
        ["astro", "SHSY5Y"],
        cfg,
        raw.astype(np.uint16),
        np.arange(N),
        ["DAPI", "FITC"],
        name="cnn",
        checkpoint_dir=tmp_path / "ck",
    )
    hist = out["history"]
    assert np.isfinite(hist[["train_loss", "valid_loss"]].to_numpy()).all(), hist
    probs = out["predictions"][["Prob_astro", "Prob_SHSY5Y"]].to_numpy()
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
