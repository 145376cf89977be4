"""Synthetic plates for the demo, the tests and the protocols (no real data is downloaded).

- ``plate``: the default demo plate (monoculture and co-culture, 4 channels, GT stains, layout).
- ``scenarios``: the protocol scenarios (cell death plates, brightfield, named files).
"""
