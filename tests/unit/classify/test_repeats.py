"""Run names and seeds of repeated training (classify.repeats)."""

import pytest

from hcsflow.classify.repeats import parse_run, run_names, run_seed


def test_run_names_parse_back_to_their_model_and_repeat():
    assert run_names("RF", 1) == ["RF"]
    names = run_names("ViT_small", 3)
    assert names == ["ViT_small", "ViT_small/seed1", "ViT_small/seed2"]
    assert [parse_run(n) for n in names] == [("ViT_small", 0), ("ViT_small", 1), ("ViT_small", 2)]
    assert parse_run("seed3") == ("seed3", 0)  # a model may be called seed3
    assert [run_seed(n, 10) for n in names] == [10, 11, 12]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        run_names("RF", 0)
