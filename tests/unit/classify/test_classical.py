"""Classical models: column subsets, train-only preprocessing (= pycytominer), estimators by
name, save/load/predict round trip, seeds, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hcsflow.classify.classical import (
    apply_preprocessing,
    estimator_class,
    feature_columns,
    fit_preprocessing,
    importances,
    load_model,
    make_estimator,
    model_info,
    predict_features,
    save_model,
    train_model,
    train_on_units,
    training_units,
)
from hcsflow.classify.evaluate import check_predictions, evaluate
from hcsflow.classify.trainset import ClassifyError

COLS = [
    "Cells_AreaShape_Area",
    "Cells_DAPI_Intensity_Mean",
    "Nuclei_DAPI_Texture_Contrast_d1",
    "Nuclei_FITC_Intensity_Mean",
    "Cytoplasm_FITC_Texture_ASM_d1",
    "Image_Count_Cells",
    "Metadata_Well",
]


def test_feature_columns_by_region_channel_and_kind():
    assert feature_columns(COLS) == COLS[:5]
    assert feature_columns(COLS, regions=["Nuclei"]) == COLS[2:4]
    assert feature_columns(COLS, channels=["FITC"]) == ["Cells_AreaShape_Area", *COLS[3:5]]
    assert feature_columns(COLS, channels=["FITC"], shape=False) == COLS[3:5]
    assert feature_columns(COLS, kinds=["Texture"]) == [COLS[2], COLS[4]]
    assert feature_columns(COLS, image_features=True)[-1] == "Image_Count_Cells"
    assert feature_columns(COLS, exclude=["Texture"]) == [COLS[0], COLS[1], COLS[3]]


def synthetic(n_wells=8, per_well=30, seed=0, shift=2.0):
    """Two classes apart in f0/f1, noise in f2; wells alternate classes; a constant column."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(n_wells):
        cls = "a" if w % 2 == 0 else "b"
        for i in range(per_well):
            rows.append(
                {
                    "Metadata_Plate": "P1",
                    "Metadata_Well": f"B{w + 2:02d}",
                    "Metadata_Site": 1 + i % 2,
                    "Metadata_Image": f"B-{w + 2:02d}-{1 + i % 2:02d}",
                    "Metadata_ObjectNumber": i + 1,
                    "class": cls,
                    "split": "train" if w < 6 else "test",
                }
            )
    df = pd.DataFrame(rows)
    y = (df["class"] == "b").to_numpy(float)
    df["Cells_DAPI_Intensity_Mean"] = 100 + shift * 10 * y + rng.normal(0, 10, len(df))
    df["Cells_FITC_Intensity_Mean"] = 50 - shift * 5 * y + rng.normal(0, 5, len(df))
    df["Nuclei_DAPI_Texture_Contrast_d1"] = rng.normal(0, 1, len(df))
    df["Cells_AreaShape_Area"] = 300.0  # no variance: removed by feature selection
    return df


FEATS = [
    "Cells_DAPI_Intensity_Mean",
    "Cells_FITC_Intensity_Mean",
    "Nuclei_DAPI_Texture_Contrast_d1",
    "Cells_AreaShape_Area",
]


def test_preprocessing_is_fitted_on_training_units_only_as_pycytominer_does():
    from pycytominer import normalize

    df = synthetic()
    train = df[df["split"] == "train"]
    prep = fit_preprocessing(
        train, FEATS, {"feature_select": ["variance_threshold"], "normalize": "standardize"}
    )
    assert prep["features"] == FEATS[:3]
    ours = apply_preprocessing(prep, df)
    ref = normalize(
        df,
        features=FEATS[:3],
        meta_features=["Metadata_Well", "split"],
        samples="split == 'train'",
        method="standardize",
    )
    np.testing.assert_allclose(ours, ref[FEATS[:3]].to_numpy(), rtol=1e-10)
    mad = fit_preprocessing(train, FEATS[:3], {"feature_select": [], "normalize": "mad_robustize"})
    ref = normalize(
        df,
        features=FEATS[:3],
        meta_features=["Metadata_Well", "split"],
        samples="split == 'train'",
        method="mad_robustize",
    )
    np.testing.assert_allclose(apply_preprocessing(mad, df), ref[FEATS[:3]].to_numpy(), rtol=1e-10)


def test_nan_values_get_the_training_median_and_all_nan_columns_are_named():
    df = synthetic()
    df.loc[df.index[:3], "Cells_DAPI_Intensity_Mean"] = np.nan
    train = df[df["split"] == "train"]
    prep = fit_preprocessing(train, FEATS[:2], {"feature_select": [], "normalize": "none"})
    x = apply_preprocessing(prep, df)
    assert x[0, 0] == train["Cells_DAPI_Intensity_Mean"].median()
    df["Nuclei_FITC_Intensity_Mean"] = np.nan
    with pytest.raises(
        ClassifyError,
        match=r"\['Nuclei_FITC_Intensity_Mean'\] are all NaN.*classify.features.exclude",
    ):
        fit_preprocessing(df[df["split"] == "train"], [*FEATS, "Nuclei_FITC_Intensity_Mean"])


def test_estimators_by_name():
    assert estimator_class("RandomForestClassifier").__name__ == "RandomForestClassifier"
    assert estimator_class("sklearn.svm.SVC").__name__ == "SVC"
    est, params = make_estimator("SVC", {"C": 2.0}, seed=5)
    assert est.probability and params["random_state"] == 5
    est, params = make_estimator("RandomForestClassifier", {"n_estimators": 7}, seed=3, threads=2)
    assert est.n_estimators == 7 and est.random_state == 3 and est.n_jobs == 2
    with pytest.raises(ClassifyError, match="'RandomForest' is not a scikit-learn classifier"):
        estimator_class("RandomForest")
    with pytest.raises(
        ClassifyError, match="'RandomForestRegressor' is not a scikit-learn classifier"
    ):
        estimator_class("RandomForestRegressor")
    with pytest.raises(ClassifyError, match=r"unknown parameter\(s\) \['trees'\]"):
        make_estimator("RandomForestClassifier", {"trees": 3})


@pytest.mark.parametrize(
    "name, params",
    [
        ("RandomForestClassifier", {"n_estimators": 50}),
        ("LogisticRegression", {"max_iter": 500}),
        ("AdaBoostClassifier", {"n_estimators": 30}),
        ("KNeighborsClassifier", {"n_neighbors": 5}),
    ],
)
def test_train_save_load_predict_round_trip(tmp_path, name, params):
    df = synthetic()
    train = df[df["split"] == "train"]
    bundle = train_model(train, FEATS, ["b", "a"], estimator=name, params=params, seed=0)
    info = model_info(bundle, name="m", unit="cell")
    save_model(bundle, info, tmp_path / "m" / "model.joblib", tmp_path / "m" / "model.json")
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert saved["classes"] == ["b", "a"] and saved["features"] == FEATS[:3]
    assert saved["kind"] == "sklearn" and saved["channels"] == ["DAPI", "FITC"]
    assert (
        saved["preprocessing"]["normalize"] == "standardize" and "scikit-learn" in saved["versions"]
    )
    pred = predict_features(bundle, df)
    again = predict_features(tmp_path / "m", df)
    pd.testing.assert_frame_equal(pred, again)
    assert list(pred.columns[-3:]) == ["confidence", "Prob_b", "Prob_a"]
    assert check_predictions(pred) == ["b", "a"]
    assert (pred["true_class"] == df["class"]).all() and (pred["split"] == df["split"]).all()
    test = pred[pred["split"] == "test"]
    assert (test["pred_class"] == test["true_class"]).mean() > 0.9
    metrics, _, wells = evaluate(pred)
    assert set(metrics["level"]) == {"unit", "well"}
    imp = importances(bundle)
    if name == "KNeighborsClassifier":
        assert imp.empty
    else:
        assert len(imp) == 3 and set(imp["feature"]) == set(FEATS[:3])
        assert imp["feature"].iloc[-1] == "Nuclei_DAPI_Texture_Contrast_d1"  # the noise column last
    # new plates: no split / class columns -> split 'predict', no true class
    new = predict_features(tmp_path / "m", df.drop(columns=["split", "class"]))
    assert (new["split"] == "predict").all() and new["true_class"].isna().all()
    with pytest.raises(ClassifyError, match=r"lacks 1 column\(s\).*Cells_FITC_Intensity_Mean"):
        predict_features(bundle, df.drop(columns=["Cells_FITC_Intensity_Mean"]))


def test_same_seed_same_model_and_metrics():
    df = synthetic(shift=0.3)  # overlapping classes: predictions depend on the forest
    train = df[df["split"] == "train"]
    runs = []
    for _ in range(2):
        b = train_model(
            train,
            FEATS,
            ["a", "b"],
            estimator="RandomForestClassifier",
            params={"n_estimators": 20},
            seed=7,
        )
        runs.append(evaluate(predict_features(b, df))[0])
    pd.testing.assert_frame_equal(runs[0], runs[1])
    other = train_model(
        train,
        FEATS,
        ["a", "b"],
        estimator="RandomForestClassifier",
        params={"n_estimators": 20},
        seed=8,
    )
    assert not np.allclose(predict_features(other, df)["Prob_a"], predict_features(b, df)["Prob_a"])


def test_training_on_one_class_is_an_error():
    df = synthetic()
    with pytest.raises(
        ClassifyError, match=r"training units hold class\(es\) \['a'\].*\['a', 'b'\]"
    ):
        train_model(df[df["class"] == "a"], FEATS, ["a", "b"], estimator="LogisticRegression")


def test_field_model_aggregates_cells_per_image(tmp_path):
    from hcsflow.classify.trainset import aggregate_fields

    df = synthetic(per_well=40)
    fields = aggregate_fields(df, FEATS).merge(
        df.drop_duplicates("Metadata_Image")[["Metadata_Image", "class", "split"]],
        on="Metadata_Image",
    )
    bundle = train_model(
        fields[fields["split"] == "train"],
        FEATS,
        ["a", "b"],
        estimator="LogisticRegression",
        preprocessing={"feature_select": []},
    )
    save_model(
        bundle,
        model_info(bundle, name="f", unit="field"),
        tmp_path / "model.joblib",
        tmp_path / "model.json",
    )
    pred = predict_features(
        load_model(tmp_path / "model.json"), df.drop(columns=["split", "class"])
    )
    assert (
        len(pred) == df["Metadata_Image"].nunique() and "Metadata_ObjectNumber" not in pred.columns
    )
    with pytest.raises(ClassifyError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_the_rules_training_path_never_sees_valid_test_or_unsampled_units():
    """train_on_units (what rule train_classifier runs) on a table whose valid, test and
    unsampled training units are then moved far away (features + 1000, classes swapped): the
    fitted preprocessing, the forest and the predictions of the sampled training units are the
    same; only the moved units' predictions change."""
    df = synthetic()
    df["sampled"] = True
    df.loc[df[df["split"] == "train"].index[::5], "sampled"] = (
        False  # balanced sampling left these out
    )
    spec = {"estimator": "RandomForestClassifier", "params": {"n_estimators": 20}}
    prep_cfg = {"feature_select": ["variance_threshold"], "normalize": "standardize"}
    bundle, pred = train_on_units(df, FEATS, ["a", "b"], spec, preprocessing=prep_cfg, seed=3)
    fitted = (df["split"] == "train") & df["sampled"]
    moved = df.copy()
    moved.loc[~fitted, FEATS] += 1000
    moved.loc[~fitted, "class"] = moved.loc[~fitted, "class"].map({"a": "b", "b": "a"})
    bundle2, pred2 = train_on_units(moved, FEATS, ["a", "b"], spec, preprocessing=prep_cfg, seed=3)
    np.testing.assert_array_equal(
        bundle2["preprocessing"]["scaler"].mean_, bundle["preprocessing"]["scaler"].mean_
    )
    np.testing.assert_array_equal(
        bundle2["preprocessing"]["scaler"].scale_, bundle["preprocessing"]["scaler"].scale_
    )
    pd.testing.assert_frame_equal(
        pred2[fitted.to_numpy()].drop(columns="true_class"),
        pred[fitted.to_numpy()].drop(columns="true_class"),
    )
    assert len(training_units(df)) == int(fitted.sum()) < (df["split"] == "train").sum()
    assert not pred2[~fitted.to_numpy()][["Prob_a"]].equals(pred[~fitted.to_numpy()][["Prob_a"]])
