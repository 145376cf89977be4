"""Rule estimate_illumination: the flat-field of one channel of one plate (hcsflow.illumination),
from an evenly spaced sample of its fields; unreadable fields (the content check's, or failing
here) are left out and named."""

import pandas as pd

from hcsflow import illumination
from hcsflow.failures import bad_files
from hcsflow.io import read_image
from hcsflow.runner import rule_logging

with rule_logging(snakemake) as log:
    par, wc = snakemake.params, snakemake.wildcards
    cfg = par.illumination
    bad = bad_files(pd.read_csv(snakemake.input.validated, sep="\t"))
    planes = []
    for image, files in par.sample.items():
        if image in bad:  # listed in failed.tsv by the content check
            log.warning("%s left out of the estimate: unreadable (%s)", image, bad[image])
            continue
        try:
            planes.append(read_image(list(files), project_z=par.project_z)[par.plane])
        except Exception as exc:  # a field the content check let through but cannot be read
            log.warning("%s left out of the estimate: unreadable (%s)", image, exc)
    if not planes:
        raise RuntimeError(f"plate {wc.plate}: no readable field to estimate {wc.channel} from")
    sizes = {p.shape for p in planes}
    if len(sizes) > 1:
        raise ValueError(f"plate {wc.plate}: fields of different sizes {sorted(sizes)}")
    flat, applied = illumination.plate_flatfield(planes, cfg, par.dark, snakemake.threads)
    if not applied:
        log.warning(
            "plate %s %s: NO FLAT-FIELD CORRECTION, only %d readable field(s) in the sample "
            "(illumination.min_fields %d): a per-pixel statistic of so few fields keeps the "
            "shapes of their cells; only the dark level %g is subtracted",
            wc.plate,
            wc.channel,
            len(planes),
            cfg["min_fields"],
            par.dark,
        )
    meta = {
        "plate": wc.plate,
        "channel": wc.channel,
        "method": cfg["method"],
        "percentile": cfg["percentile"],
        "smoothing": cfg["smoothing"],
        "n_fields": len(planes),
        "applied": bool(applied),
    }
    illumination.write_function(snakemake.output[0], flat, par.dark, meta)
    log.info(
        "plate %s %s: flat-field from %d fields (%s), %.3f - %.3f (corner / centre %.3f), dark %g",
        wc.plate,
        wc.channel,
        len(planes),
        cfg["method"],
        float(flat.min()),
        float(flat.max()),
        float(flat[: flat.shape[0] // 10, : flat.shape[1] // 10].mean())
        / float(flat[flat.shape[0] // 2, flat.shape[1] // 2]),
        par.dark,
    )
