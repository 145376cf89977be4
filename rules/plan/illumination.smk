# Illumination correction (rules/illumination.smk): which fields estimate a plate's functions, and
# the function files every job reading raw images of the plate corrects them with.

import re

from hcsflow import illumination as hcs_illumination

ILLUM = config["illumination"]
ILLUM_ON = ILLUM["method"] != "none"
ILLUM_CHANNELS = list(config["images"]["channels"])
ILLUM_DARKS = dict(
    zip(ILLUM_CHANNELS, hcs_illumination.channel_darks(ILLUM["dark"], ILLUM_CHANNELS))
)
_ILLUM_PLATE_IMAGES = {p: list(g["image"]) for p, g in IMAGES.groupby("plate", sort=True)}


def illumination_files(wildcards):
    """Input function: the flat-fields of ``{plate}``'s channels ([] without correction)."""
    return illumination_of(wildcards.plate)


def illumination_of(plate):
    if not ILLUM_ON:
        return []
    return [f"{RESULTS}/{plate}/illumination/{c}.tif" for c in ILLUM_CHANNELS]


# The one illumination input of a batched job (a relay listing the plate's function files; rule
# illumination_functions): [] without correction.
ILLUM_LIST = [f"{RESULTS}/{{plate}}/illumination/functions.tsv"] if ILLUM_ON else []


def illumination_sample(wildcards):
    """The sampled fields of ``{plate}`` (hcsflow.illumination.sample_images): ``{image: files}``,
    the file(s) holding ``{channel}`` (its own file when the images have one per channel)."""
    images = hcs_illumination.sample_images(_ILLUM_PLATE_IMAGES[wildcards.plate], ILLUM["sample"])
    index = ILLUM_CHANNELS.index(wildcards.channel)
    out = {}
    for image in images:
        files = raw_files_of(wildcards.plate, image)
        out[image] = [files[index]] if len(files) == len(ILLUM_CHANNELS) > 1 else files
    return out


def illumination_targets():
    return [f"{RESULTS}/{p}/illumination/flatfield.png" for p in PLATES] if ILLUM_ON else []
