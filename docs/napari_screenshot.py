"""Open one well of an exported plate in napari, headless, and save a screenshot.

    .venv-napari/bin/python docs/napari_screenshot.py results/Plate02.ome.zarr B/03 \
        --out docs/images/napari_well.png

Each field of the well is opened with napari-ome-zarr (the reader napari users install) as its
channels and its label images; the ``cells`` labels keep the colours the export gave them (the
class the model predicted; grey: not called) and are drawn as outlines over the channels. Fields
are laid side by side. Headless: run it under Xvfb (``xvfb-run``, a virtual X server) with Mesa's
software OpenGL; Qt's ``offscreen`` platform gives vispy no OpenGL context (napari draws a black
canvas). ``make napari-screenshot`` builds ``.venv-napari`` (napari is not in the workflow's lock:
it is a viewer, not a step) and runs this on the demo.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path



def well_fields(plate: Path, well: str) -> list[Path]:
    meta = json.loads((plate / well / "zarr.json").read_text())["attributes"]["ome"]["well"]
    return [plate / well / img["path"] for img in meta["images"]]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("plate", type=Path, help="results/{plate}.ome.zarr")
    p.add_argument("well", help="row/column, e.g. B/03")
    p.add_argument("--out", type=Path, default=Path("napari_well.png"))
    p.add_argument("--channels", nargs="*", default=None, help="channel names to show (all)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=700)
    args = p.parse_args(argv)

    import napari
    import numpy as np

    plate_meta = json.loads((args.plate / "zarr.json").read_text())["attributes"]
    legend = plate_meta.get("hcsflow", {}).get("class_colors", {})
    viewer = napari.Viewer(show=True)  # a hidden canvas renders nothing (black)
    offset = 0.0
    for field in well_fields(args.plate, args.well):
        layers = viewer.open(str(field), plugin="napari-ome-zarr")
        width = 0.0
        for layer in layers:
            # napari-ome-zarr names them "image: DAPI", "labels/labels/cells"; napari adds " [1]"
            # to a second field's layers
            name = re.sub(r" \[\d+\]$", "", layer.name)
            channel = name.split(": ")[-1]
            if args.channels and isinstance(layer, napari.layers.Image):
                layer.visible = channel in args.channels
            if isinstance(layer, napari.layers.Labels):
                # the cells in their class colours (the export's label colours, read by
                # napari-ome-zarr), half transparent over the channels
                layer.visible = name.endswith("/cells")
                layer.opacity = 0.45
            layer.translate = np.asarray(layer.translate, float) + np.array(
                [0.0] * (layer.ndim - 1) + [offset]
            )
            width = max(width, float(layer.extent.world[1][-1] - layer.extent.world[0][-1]))
        offset += width * 1.03
    # the canvas at the screenshot's size, then the camera fitted to the fields
    viewer.window._qt_window.resize(args.width, args.height)
    viewer.window._qt_viewer.canvas.native.resize(args.width, args.height)
    viewer.reset_view()
    viewer.text_overlay.visible = True
    viewer.text_overlay.text = f"{args.plate.name} well {args.well}: " + ", ".join(
        f"{name} = rgb{tuple(rgba[:3])}" for name, rgba in legend.items()
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=True)
    viewer.close()
    print(f"screenshot of {args.plate} {args.well} -> {args.out}")


if __name__ == "__main__":
    main()
