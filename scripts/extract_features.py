"""Rule extract_features: per-cell intensity, shape and texture features of one image."""

from hcsflow.alignment import check_masks, pair_nuclei_to_cells
from hcsflow.features import image_features, image_metadata
from hcsflow.ingest import read_image_table
from hcsflow.io import read_image, read_labels, write_table
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    inp, par = snakemake.input, snakemake.params
    wc = snakemake.wildcards
    meta = image_metadata(read_image_table(inp.images), wc.plate, wc.image)
    cfg = par.features
    image_paths = list(inp.image)
    image = read_image(image_paths, project_z=par.project_z)
    if image.shape[0] != len(par.channels):
        raise ValueError(
            f"{image_paths}: {image.shape[0]} channel(s) but images.channels lists "
            f"{len(par.channels)}; fix images.channels"
        )
    cells, nuclei = read_labels(inp.cells), read_labels(inp.nuclei)
    check_masks(image.shape[1:], image_paths, cells=(cells, inp.cells), nuclei=(nuclei, inp.nuclei))
    nuclei, pairing = pair_nuclei_to_cells(cells, nuclei, min_overlap=par.min_nucleus_overlap)
    texture = dict(cfg["texture"])
    table = image_features(
        image, cells, nuclei, par.channels,
        compartments=cfg["compartments"], shape=cfg["shape"],
        texture=texture if texture.pop("enabled") else None,
        patch_size=cfg["patch_size"], metadata=meta,
    )
    log.info("%d cells x %d columns; pairing %s", len(table), table.shape[1], pairing)
    write_table(table, snakemake.output[0])
