"""Ingest: from the microscope's files to the image table every later stage reads.

- ``table``: file names -> ``results/images.tsv`` (one row per image: plate, well, field, the raw
  files in channel order, GT files), from a regex or named files; canonical links for people.
- ``layout``: Excel plate maps (``Culture`` and extra sheets) -> per-well annotations.
- ``validate``: the content check of every raw file (readable, channels, shape, pixel type) ->
  ``results/{plate}/validation.tsv``; the jobs that read images wait for it.

Contract: ``results/images.tsv`` (docs/ARCHITECTURE.md, "The image table").
"""
