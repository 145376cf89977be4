"""Image reading (axes, z-projection, multi-file stacking) and atomic writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage import io as skio

from hcsflow.io import (
    ImageReadError,
    _to_cyx,
    atomic_path,
    read_image,
    read_label_metadata,
    read_labels,
    read_table,
    write_labels,
    write_table,
)


def test_tiff_cyx_and_single_plane(tmp_path):
    img = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "a.tif", img, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), img)
    tifffile.imwrite(tmp_path / "b.tif", img[0])
    assert read_image(tmp_path / "b.tif").shape == (1, 4, 5)


def test_ome_tiff_zstack_is_max_projected(tmp_path):
    stack = np.zeros((3, 2, 4, 5), np.uint16)  # Z, C, Y, X
    stack[1, 0, 1, 1] = 7
    stack[2, 1, 2, 2] = 9
    tifffile.imwrite(tmp_path / "z.ome.tif", stack, ome=True, metadata={"axes": "ZCYX"})
    out = read_image(tmp_path / "z.ome.tif")
    assert out.shape == (2, 4, 5)
    assert out[0, 1, 1] == 7 and out[1, 2, 2] == 9 and out.sum() == 16
    first = read_image(tmp_path / "z.ome.tif", project_z="first")
    assert first.sum() == 0


def test_nd2_style_axes():
    # nd2.ND2File.sizes gives e.g. {'T': 1, 'Z': 2, 'C': 3, 'Y': 4, 'X': 5}
    arr = np.random.default_rng(0).integers(0, 100, (1, 2, 3, 4, 5))
    out = _to_cyx(arr, "TZCYX", "x.nd2", "max")
    np.testing.assert_array_equal(out, arr[0].max(axis=0))
    with pytest.raises(ImageReadError, match="axis 'T' has length 2"):
        _to_cyx(np.zeros((2, 3, 4, 5)), "TCYX", "x.nd2", "max")


def test_rgb_png_becomes_three_channels(tmp_path):
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 200
    skio.imsave(tmp_path / "bf.png", rgb, check_contrast=False)
    out = read_image(tmp_path / "bf.png")
    assert out.shape == (3, 6, 7) and out[1].min() == 200 and out[0].max() == 0


def test_per_channel_files_are_stacked_in_order(tmp_path):
    for k in range(3):
        tifffile.imwrite(tmp_path / f"c{k}.tif", np.full((4, 4), k, np.uint16))
    out = read_image([tmp_path / "c2.tif", tmp_path / "c0.tif", tmp_path / "c1.tif"])
    assert list(out[:, 0, 0]) == [2, 0, 1]
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((5, 4), np.uint16))
    with pytest.raises(ImageReadError, match="differ in size"):
        read_image([tmp_path / "c0.tif", tmp_path / "big.tif"])


def test_corrupt_and_missing_files_are_named(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match="bad.tif"):
        read_image(tmp_path / "bad.tif")
    with pytest.raises(ImageReadError, match="nope.tif: file does not exist"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "x.bmp").write_bytes(b"")
    with pytest.raises(ImageReadError, match="unsupported file type"):
        read_image(tmp_path / "x.bmp")


def test_labels_dtype_and_roundtrip(tmp_path):
    small = np.zeros((4, 4), np.int64)
    small[1, 1] = 3
    write_labels(tmp_path / "s.tif", small)
    assert read_labels(tmp_path / "s.tif").dtype == np.uint16
    big = small.copy()
    big[2, 2] = 70000
    write_labels(tmp_path / "b.tif", big)
    back = read_labels(tmp_path / "b.tif")
    assert back.dtype == np.uint32 and back[2, 2] == 70000


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    df = pd.DataFrame({"a": [1, 2]})
    write_table(df, target)
    pd.testing.assert_frame_equal(read_table(target), df)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_label_metadata_round_trip(tmp_path):
    labels = np.zeros((16, 16), np.uint16)
    labels[2:5, 2:5] = 1
    write_labels(tmp_path / "m.tif", labels, metadata={"empty_field": False, "structure": 9})
    assert np.array_equal(read_labels(tmp_path / "m.tif"), labels)
    assert read_label_metadata(tmp_path / "m.tif") == {"empty_field": False, "structure": 9}
    write_labels(tmp_path / "plain.tif", labels)
    assert read_label_metadata(tmp_path / "plain.tif") == {}


def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "shared.tsv")
        os.umask(0o077)
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "private.tsv")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.tsv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.tsv").stat().st_mode) == 0o600


def test_per_image_file_reads_the_batch_column(tmp_path):
    from hcsflow.io import per_image_file
    from hcsflow.runner import job_files

    res = tmp_path / "results"
    res.mkdir()
    pd.DataFrame(
        {"plate": ["P1", "P1"], "image": ["B-02-01", "C-02-01"], "batch": ["B", "C"]}
    ).to_csv(res / "images.tsv", sep="\t", index=False)
    (path,) = job_files(res / "P1" / "masks" / "cells" / "C", ["C-02-01"], ".tif")
    assert (res / "P1/masks/cells/C").is_dir()  # the job's folder exists before any write
    assert per_image_file(res, "P1", "C-02-01", "masks/cells", ".tif") == Path(path)
    with pytest.raises(KeyError, match="D-02-01"):
        per_image_file(res, "P1", "D-02-01", "masks/cells", ".tif")
    # a rewritten image table is read again (another batch setting: other folders)
    pd.DataFrame({"plate": ["P1"], "image": ["C-02-01"], "batch": ["C-02"]}).to_csv(
        res / "images.tsv", sep="\t", index=False
    )
    assert per_image_file(res, "P1", "C-02-01", "masks/cells", ".tif") == (
        res / "P1/masks/cells/C-02/C-02-01.tif"
    )


def test_per_image_file_without_the_image_table_searches_the_stage(tmp_path):
    from hcsflow.io import per_image_file
    from hcsflow.runner import job_files

    res = tmp_path / "results"
    job_files(res / "P1" / "masks" / "nuclei" / "B-02", ["B-02-01", "B-02-02"], ".tif")
    (res / "P1/masks/nuclei/B-02/B-02-01.tif").write_bytes(b"x")
    got = per_image_file(res, "P1", "B-02-01", "masks/nuclei", ".tif")
    assert got == res / "P1/masks/nuclei/B-02/B-02-01.tif"
    with pytest.raises(KeyError, match="0 files"):
        per_image_file(res, "P1", "C-02-01", "masks/nuclei", ".tif")
