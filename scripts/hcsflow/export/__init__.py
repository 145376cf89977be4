"""Export: a plate as an NGFF OME-Zarr HCS plate (``results/{plate}.ome.zarr``) that napari
(napari-ome-zarr), vizarr, MoBIE and Fractal open: plate -> wells -> fields, each field its raw
channels as a multiscale image, its ``cells`` and ``nuclei`` label images coloured by predicted
class, and a per-cell table with features and predictions (docs/ARCHITECTURE.md, "OME-Zarr
export"; docs/usage.md, "Browse a plate").

- ``ome_zarr``: planning helpers (well / field paths, pyramid levels, class colours), the per-cell
  table of a field, writing one field, assembling and validating a plate.
"""
