"""Rule align_gt: shift a GT stain image onto its CP image and filter the masks."""

from hcsflow.alignment import (
    align_gt_to_cp,
    alignment_table,
    channel_indices,
    check_gt,
    check_masks,
    qc_figure,
    read_masks,
)
from hcsflow.features import image_features, image_metadata
from hcsflow.ingest import read_image_table
from hcsflow.io import read_image, save_figure, write_labels, write_table, write_tiff
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    wc = snakemake.wildcards
    meta = image_metadata(read_image_table(inp.images), wc.plate, wc.image)
    cfg = par.alignment
    cp_paths, gt_paths = list(inp.cp), list(inp.gt)
    cp = read_image(cp_paths, project_z=par.project_z)
    gt = read_image(gt_paths, project_z=par.project_z)
    check_gt(cp.shape, cp_paths, gt.shape, gt_paths, list(par.gt_channels))
    # A run may have only cell or only nucleus masks (see hcsflow.checks); both outputs are written.
    cells_path, nuclei_path = getattr(inp, "cells", None), getattr(inp, "nuclei", None)
    cells, nuclei = read_masks(cells_path, nuclei_path)
    check_masks(cp.shape[1:], cp_paths, cells=(cells, cells_path or nuclei_path),
                nuclei=(nuclei, nuclei_path or cells_path))

    cp_idx = channel_indices(par.channels, cfg["cp_channels"], "alignment.cp_channels") or [0]
    gt_idx = channel_indices(par.gt_channels, cfg["gt_channels"], "alignment.gt_channels")
    result = align_gt_to_cp(
        cp, gt, cells, nuclei,
        cp_channels=cp_idx, gt_channels=gt_idx,
        min_gt_ratio=cfg["min_gt_ratio"], max_shift=cfg["max_shift"], upsample=cfg["upsample"],
        window=cfg["window"], center_crop=cfg["center_crop"], clear_border=cfg["clear_border"],
        min_overlap=cfg["min_nucleus_overlap"],
    )
    counts = result.objects["reason"].replace("", "kept").value_counts().to_dict()
    log.info("shift (dy, dx) = %s, peak %.3f, ncc %.3f; cells: %s; pairing: %s",
             result.shift, result.peak, result.ncc, counts, result.pairing)

    # GT stain intensities of the kept cells, for the labels rule (intensity only: cheap).
    gt_feats = image_features(
        result.gt_aligned, result.cells, result.nuclei, list(par.gt_channels),
        compartments=("Nuclei", "Cells"), shape=False, texture=None, metadata=meta,
    )
    table = alignment_table(result, meta)
    fig = qc_figure(
        cp[cp_idx].max(axis=0),
        gt[gt_idx].max(axis=0) if gt_idx else gt.max(axis=0),
        result, cells_in=cells, max_size=cfg["qc_max_size"],
        title=f"{meta['Metadata_Plate']} {meta['Metadata_Image']}",
    )
    # Everything is computed before the first write; each write is atomic.
    write_tiff(out.gt, result.gt_aligned, axes="CYX")
    write_labels(out.cells, result.cells)
    write_labels(out.nuclei, result.nuclei)
    write_table(table, out.table)
    write_table(gt_feats, out.gt_features)
    save_figure(fig, out.qc)
