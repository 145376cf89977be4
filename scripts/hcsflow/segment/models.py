"""Where segmentation weights live, how they are fetched, and how they are loaded (offline).

Policy: no segmentation or training job downloads anything. Pretrained weights are placed under
``resources/models/`` by the ``fetch_models`` local rule (run it on an internet-connected login
node: ``snakemake fetch_models --cores 1``); every job then loads from there, or from a path the
config names (a fine-tuned model). Paths are checked here *before* Cellpose / StarDist see them,
because Cellpose silently falls back to downloading ``cyto3`` when a path is mistyped.

Layout under ``models_dir`` (default ``resources/models``)::

    cellpose/cyto3            cellpose/size_cyto3.npy       # Cellpose's own file names
    cellpose/cyto2torch_0     cellpose/size_cyto2torch_0.npy
    stardist/2D_versatile_fluo/config.json, thresholds.json, weights_best.h5
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hcsflow.segment.models")

FETCH_COMMAND = "snakemake fetch_models --cores 1"

# Cellpose 3.1 built-in names -> file names in its model folder (cellpose.models.model_path).
CELLPOSE_FILES = {
    "cyto": "cytotorch_0",
    "cyto2": "cyto2torch_0",
    "cyto3": "cyto3",
    "nuclei": "nucleitorch_0",
}
CELLPOSE_SIZE_FILES = {
    "cyto": "size_cytotorch_0.npy",
    "cyto2": "size_cyto2torch_0.npy",
    "cyto3": "size_cyto3.npy",
    "nuclei": "size_nucleitorch_0.npy",
}
# Diameter each built-in network was trained at (Cellpose's own values).
CELLPOSE_DIAM_MEAN = {"cyto": 30.0, "cyto2": 30.0, "cyto3": 30.0, "nuclei": 17.0}
CELLPOSE_URL = "https://www.cellpose.org/models"

STARDIST_PRETRAINED = ("2D_versatile_fluo", "2D_versatile_he", "2D_paper_dsb2018", "2D_demo")


class ModelNotFoundError(FileNotFoundError):
    """A configured model is not on disk; the message says how to get it."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model spec from the config turned into local paths.

    ``kind`` is ``'cellpose'`` or ``'stardist'``; ``path`` is the Cellpose weights file or the
    StarDist model folder; ``name`` the built-in name (None for a user / fine-tuned model);
    ``size_path`` the Cellpose size model used to estimate diameters (built-ins only).
    """

    kind: str
    path: Path
    name: str | None = None
    size_path: Path | None = None


def is_cellpose_builtin(spec: str) -> bool:
    return spec in CELLPOSE_FILES


def is_stardist_pretrained(spec: str) -> bool:
    return spec in STARDIST_PRETRAINED


def cellpose_weights_path(name: str, models_dir: str | os.PathLike = "resources/models") -> Path:
    """Where ``fetch_models`` puts the built-in Cellpose model ``name``."""
    if name not in CELLPOSE_FILES:
        raise ValueError(f"{name!r} is not a Cellpose built-in model ({', '.join(CELLPOSE_FILES)})")
    return Path(models_dir) / "cellpose" / CELLPOSE_FILES[name]


def cellpose_size_path(name: str, models_dir: str | os.PathLike = "resources/models") -> Path:
    return Path(models_dir) / "cellpose" / CELLPOSE_SIZE_FILES[name]


def stardist_model_dir(name: str, models_dir: str | os.PathLike = "resources/models") -> Path:
    """Where ``fetch_models`` puts the pretrained StarDist model ``name``."""
    return Path(models_dir) / "stardist" / name


def model_input_path(
    kind: str, spec: str, models_dir: str | os.PathLike = "resources/models"
) -> Path:
    """The one file a rule declares as its model input (so Snakemake can chain fetch / train).

    Cellpose: the weights file. StarDist: the model folder's ``config.json``.
    """
    if kind == "cellpose":
        return cellpose_weights_path(spec, models_dir) if is_cellpose_builtin(spec) else Path(spec)
    if kind == "stardist":
        folder = (
            stardist_model_dir(spec, models_dir) if is_stardist_pretrained(spec) else Path(spec)
        )
        return folder / "config.json"
    raise ValueError(f"unknown model kind {kind!r}")


def _missing(what: str, path: Path, builtin: bool, config_key: str) -> ModelNotFoundError:
    if builtin:
        return ModelNotFoundError(
            f"{what} weights not found at {path}. Jobs never download weights: run "
            f"`{FETCH_COMMAND}` on a machine with internet access (e.g. the cluster login node) "
            f"to place them under {path.parent}/, copy the file there by hand, or set "
            f"{config_key} to a local model."
        )
    return ModelNotFoundError(
        f"{what} model {path} does not exist. Check {config_key} in the config: a built-in name "
        f"or the path of a local (e.g. fine-tuned) model; built-ins are fetched with `{FETCH_COMMAND}`."
    )


def resolve_cellpose(
    spec: str,
    models_dir: str | os.PathLike = "resources/models",
    config_key: str = "segmentation.cells.model",
) -> ResolvedModel:
    """Turn a Cellpose model spec (built-in name or weights path) into checked local paths."""
    spec = str(spec)
    if is_cellpose_builtin(spec):
        path = cellpose_weights_path(spec, models_dir)
        if not path.is_file():
            raise _missing(f"Cellpose '{spec}'", path, True, config_key)
        size = cellpose_size_path(spec, models_dir)
        return ResolvedModel("cellpose", path, spec, size if size.is_file() else None)
    path = Path(spec)
    if path.is_dir():
        # A training folder: Cellpose saves into <dir>/models/<name>; accept exactly one file.
        cands = (
            [p for p in (path / "models").glob("*") if p.is_file()]
            if (path / "models").is_dir()
            else []
        )
        if len(cands) != 1:
            raise ModelNotFoundError(
                f"{path} is a folder; {config_key} must name a Cellpose weights file (e.g. "
                f"{path}/models/<model_name>)"
            )
        path = cands[0]
    if not path.is_file():
        raise _missing("Cellpose", path, False, config_key)
    size = Path(str(path) + "_size.npy")
    return ResolvedModel("cellpose", path, None, size if size.is_file() else None)


def resolve_stardist(
    spec: str,
    models_dir: str | os.PathLike = "resources/models",
    config_key: str = "segmentation.nuclei.model",
) -> ResolvedModel:
    """Turn a StarDist spec (pretrained name or model folder) into a checked local folder."""
    spec = str(spec)
    builtin = is_stardist_pretrained(spec)
    folder = stardist_model_dir(spec, models_dir) if builtin else Path(spec)
    if folder.name == "config.json":
        folder = folder.parent
    if not (folder / "config.json").is_file():
        raise _missing(f"StarDist '{spec}'" if builtin else "StarDist", folder, builtin, config_key)
    weights = list(folder.glob("weights*.h5"))
    if not weights:
        raise ModelNotFoundError(
            f"StarDist model folder {folder} has a config.json but no weights*.h5 file; train or "
            f"fetch it again ({FETCH_COMMAND} for pretrained models)."
        )
    return ResolvedModel("stardist", folder, spec if builtin else None)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_cellpose(resolved: ResolvedModel, device=None, nchan: int = 2):
    """Load a Cellpose model from a checked local file (never by name, so it cannot download)."""
    from cellpose import models as cpm

    if not Path(resolved.path).is_file():  # re-check: the resolver may have run elsewhere
        raise _missing(
            "Cellpose", Path(resolved.path), resolved.name is not None, "segmentation model"
        )
    kwargs = {"pretrained_model": str(resolved.path), "nchan": nchan}
    if device is not None:
        kwargs["device"] = device
        kwargs["gpu"] = getattr(device, "type", str(device)) != "cpu"
    if resolved.name:
        kwargs["diam_mean"] = CELLPOSE_DIAM_MEAN[resolved.name]
    model = cpm.CellposeModel(**kwargs)
    if resolved.name:  # built-in weights: Cellpose's own diameter convention
        model.diam_mean = CELLPOSE_DIAM_MEAN[resolved.name]
    log.info(
        "loaded Cellpose model %s (diam_mean %.1f, trained on objects of ~%.1f px)",
        resolved.path,
        float(model.diam_mean),
        float(model.diam_labels),
    )
    return model


def load_stardist(resolved: ResolvedModel):
    """Load a StarDist2D model from its local folder."""
    from stardist.models import StarDist2D

    folder = Path(resolved.path)
    model = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    log.info("loaded StarDist model %s (thresholds %s)", folder, getattr(model, "thresholds", None))
    return model


# ---------------------------------------------------------------------------------------------
# Fetching (login node only)
# ---------------------------------------------------------------------------------------------
class FetchError(RuntimeError):
    """Downloading weights failed (usually: no internet on this machine)."""


def _offline_hint(what: str, url: str, exc: Exception, dest: Path) -> FetchError:
    return FetchError(
        f"could not download {what} from {url} ({type(exc).__name__}: {exc}). This machine seems to "
        f"have no internet access: run `{FETCH_COMMAND}` on one that has (e.g. the cluster login "
        f"node, sharing this project folder), or copy the files to {dest} by hand."
    )


def fetch_cellpose(name: str, models_dir: str | os.PathLike = "resources/models") -> list[Path]:
    """Download a built-in Cellpose model and its size model into ``models_dir/cellpose``.

    The files are Cellpose's own (same URL and names as ``cellpose.models.model_path``), so
    ``CELLPOSE_LOCAL_MODELS_PATH=resources/models/cellpose`` makes Cellpose's GUI/CLI find them too.
    """
    import urllib.request

    dest = Path(models_dir) / "cellpose"
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for fname in (CELLPOSE_FILES[name], CELLPOSE_SIZE_FILES[name]):
        target = dest / fname
        if target.is_file():
            out.append(target)
            continue
        url = f"{CELLPOSE_URL}/{fname}"  # what cellpose.models.cache_model_path downloads
        tmp = dest / f".{fname}.part"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise _offline_hint(f"Cellpose '{name}' ({fname})", url, exc, target) from exc
        os.replace(tmp, target)
        out.append(target)
    return out


def fetch_stardist(name: str, models_dir: str | os.PathLike = "resources/models") -> Path:
    """Download a pretrained StarDist2D model into ``models_dir/stardist/<name>``.

    Uses csbdeep's registry (URL and hash) and Keras' ``get_file`` with its cache in our folder.
    """
    from csbdeep.models.pretrained import get_model_details
    from keras.utils import get_file
    from stardist.models import StarDist2D

    dest = stardist_model_dir(name, models_dir)
    if (dest / "config.json").is_file():
        return dest
    key, _alias, meta = get_model_details(StarDist2D, name)
    cache = Path(models_dir) / "stardist" / ".cache"
    try:
        path = Path(
            get_file(
                fname=key + ".zip",
                origin=meta["url"],
                file_hash=meta["hash"],
                cache_dir=str(cache),
                cache_subdir=key,
                extract=True,
            )
        )
    except Exception as exc:
        raise _offline_hint(f"StarDist '{name}'", meta["url"], exc, dest) from exc
    # Keras >= 3.6 extracts into '<zip>_extracted'; find the folder that holds config.json.
    configs = list(Path(path if path.is_dir() else path.parent).rglob("config.json"))
    if not configs:
        raise FetchError(f"downloaded StarDist '{name}' but found no config.json under {path}")
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(configs[0].parent, tmp)
    os.replace(tmp, dest)
    shutil.rmtree(cache, ignore_errors=True)
    return dest


def ready_target(seg_cfg: dict, target: str, channels, model_spec: str | None = None, logger=None):
    """A :class:`~hcsflow.segment.methods.TargetSpec` for ``target`` with its model loaded.

    ``model_spec`` is the configured model with ``trained`` already replaced by a path (the rule
    passes it). Cellpose runs on the GPU when ``seg_cfg['gpu']`` and one is visible, else on the
    CPU (logged). Built-in Cellpose models estimate the diameter with their size model when no
    diameter is configured.
    """
    from hcsflow.segment import methods as seg

    logger = logger or log
    spec = seg.spec_from_config(seg_cfg, target, channels)
    key = f"segmentation.{target}.model"
    models_dir = seg_cfg.get("models_dir", "resources/models")
    if spec.method == "cellpose":
        from hcsflow.runner import torch_device

        resolved = resolve_cellpose(model_spec or seg_cfg[target]["model"], models_dir, key)
        device = torch_device(prefer_gpu=bool(seg_cfg.get("gpu", True)), logger=logger)
        spec.model = load_cellpose(resolved, device=device)
        if not spec.cellpose.diameter:
            if resolved.size_path is not None:
                spec.size_model_path = str(resolved.size_path)
            else:
                # A trained model: objects are assumed to be the size it was trained on.
                spec.cellpose.diameter = float(spec.model.diam_labels)
                logger.info(
                    "diameter not set: using the training diameter %.1f px", spec.cellpose.diameter
                )
    elif spec.method == "stardist":
        resolved = resolve_stardist(model_spec or seg_cfg[target]["model"], models_dir, key)
        spec.model = load_stardist(resolved)
    return spec
