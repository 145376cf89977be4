"""Rule align_gt: shift the GT stain images of a batch onto their CP images and filter the
masks; per image ``{output.aligned}/{image}.{gt.tif,cells.tif,nuclei.tif,shift.parquet,
gt_features.parquet,qc.png}``."""

import numpy as np

from hcsflow.batches import batch_fields
from hcsflow.cells.align import (
    align_gt_to_cp,
    alignment_table,
    channel_indices,
    check_gt,
    check_masks,
    qc_figure,
    read_masks,
)
from hcsflow.cells.features import image_features, image_metadata
from hcsflow.failures import (
    BatchFailures,
    empty_field,
    failure_metadata,
    for_each_image,
    read_upstream,
)
from hcsflow.ingest.table import read_image_table
from hcsflow.io import read_image, save_figure, write_labels, write_table, write_tiff
from hcsflow.runner import job_files, rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    names, cp_files, cell_files, nucleus_files = batch_fields(par.fields)
    gt_files = list(par.fields["gt"])
    # a run may have only cell or only nucleus masks (hcsflow.checks); both outputs are written
    written = {
        kind: job_files(out.aligned, names, f".{kind}")
        for kind in (
            "gt.tif",
            "cells.tif",
            "nuclei.tif",
            "shift.parquet",
            "gt_features.parquet",
            "qc.png",
        )
    }
    image_table = read_image_table(inp.images)
    cfg = par.alignment
    cp_idx = channel_indices(par.channels, cfg["cp_channels"], "alignment.cp_channels") or [0]
    gt_idx = channel_indices(par.gt_channels, cfg["gt_channels"], "alignment.gt_channels")

    def one(i, name):
        cp_paths, gt_paths = cp_files[i], gt_files[i]
        cp = read_image(cp_paths, project_z=par.project_z)
        gt = read_image(gt_paths, project_z=par.project_z)
        check_gt(cp.shape, cp_paths, gt.shape, gt_paths, list(par.gt_channels))
        cells_path, nuclei_path = cell_files[i], nucleus_files[i]
        cells, nuclei = read_masks(cells_path, nuclei_path)
        check_masks(
            cp.shape[1:],
            cp_paths,
            cells=(cells, cells_path or nuclei_path),
            nuclei=(nuclei, nuclei_path or cells_path),
        )
        return align(i, name, cp, gt, cells, nuclei)

    def align(i, name, cp, gt, cells, nuclei, mask_metadata=None):
        meta = image_metadata(image_table, snakemake.wildcards.plate, name)
        result = align_gt_to_cp(
            cp,
            gt,
            cells,
            nuclei,
            cp_channels=cp_idx,
            gt_channels=gt_idx,
            min_gt_ratio=cfg["min_gt_ratio"],
            max_shift=cfg["max_shift"],
            upsample=cfg["upsample"],
            window=cfg["window"],
            center_crop=cfg["center_crop"],
            clear_border=cfg["clear_border"],
            min_overlap=cfg["min_nucleus_overlap"],
        )
        counts = result.objects["reason"].replace("", "kept").value_counts().to_dict()
        # GT stain intensities of the kept cells, for the labels rule (intensity only: cheap).
        gt_feats = image_features(
            result.gt_aligned,
            result.cells,
            result.nuclei,
            list(par.gt_channels),
            compartments=("Nuclei", "Cells"),
            shape=False,
            texture=None,
            metadata=meta,
        )
        table = alignment_table(result, meta)
        fig = qc_figure(
            cp[cp_idx].max(axis=0),
            gt[gt_idx].max(axis=0) if gt_idx else gt.max(axis=0),
            result,
            cells_in=cells,
            max_size=cfg["qc_max_size"],
            title=f"{meta['Metadata_Plate']} {meta['Metadata_Image']}",
        )
        # Everything of this image is computed before its first write; each write is atomic.
        write_tiff(written["gt.tif"][i], result.gt_aligned, axes="CYX")
        write_labels(written["cells.tif"][i], result.cells, metadata=mask_metadata)
        write_labels(written["nuclei.tif"][i], result.nuclei, metadata=mask_metadata)
        write_table(table, written["shift.parquet"][i])
        write_table(gt_feats, written["gt_features.parquet"][i])
        save_figure(fig, written["qc.png"][i])
        return (
            f"shift (dy, dx) = {result.shift}, peak {result.peak:.3f}, ncc {result.ncc:.3f}; "
            f"cells: {counts}; pairing: {result.pairing}"
        )

    def write_empty(i, name):
        # empty GT image, masks marked failed (crops and features skip them), a no_cells row
        cp, cells, nuclei = empty_field(cell_files[i] or nucleus_files[i], len(par.channels))
        gt = np.zeros((len(par.gt_channels), *cells.shape), cp.dtype)
        align(i, name, cp, gt, cells, nuclei, failure_metadata(*failures.cause(name)))

    failures = BatchFailures(
        "align_gt",
        par.on_image_error,
        read_upstream(names, None, [cell_files, nucleus_files]),
        write_empty,
    )
    for_each_image(names, one, log, failures)
    write_table(failures.table(snakemake.wildcards.plate), out.failed)
