"""Parse-time planning of prediction: which models (``predict.model``) and plates
(``predict.plates``) a run predicts, and which crop type a torch model reads."""

from __future__ import annotations

from pathlib import Path

from hcsflow.predict.model import ModelFileError, load_model_info, model_input


def run_model_kinds(config: dict) -> dict[str, str]:
    """Model name -> kind (``sklearn``/``torch``) of the models this run trains
    (``classify.models`` / ``deep.models`` of an enabled section; a mapping name -> settings or a
    list with ``name``)."""
    out = {}
    for section, kind in (("classify", "sklearn"), ("deep", "torch")):
        sec = config.get(section) or {}
        if not sec.get("enabled", False):
            continue
        models = sec.get("models") or {}
        if isinstance(models, dict):
            names = [
                n
                for n, m in models.items()
                if not (isinstance(m, dict) and m.get("enabled") is False)
            ]
        else:
            names = [
                m["name"] if isinstance(m, dict) else str(m)
                for m in models
                if not (isinstance(m, dict) and m.get("enabled") is False)
            ]
        out.update({str(n): kind for n in names})
    return out


def resolve_models(spec, run_models: dict[str, str], results: str = "results") -> list[dict]:
    """``predict.model`` (a name of this run, a path to a model.json, or a list of them) ->
    ``[{'name', 'json', 'kind', 'external'}]``. A path is read now (its model.json exists);
    a model of this run is trained by this run."""
    if spec is None:
        return []
    specs = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for s in specs:
        s = str(s)
        if s in run_models:
            out.append(
                {
                    "name": s,
                    "json": f"{results}/classify/{s}/model.json",
                    "kind": run_models[s],
                    "external": False,
                }
            )
            continue
        if not (s.endswith(".json") or "/" in s):
            raise ModelFileError(
                f"predict.model {s!r} is neither a model of this run ({sorted(run_models) or 'none'}: "
                f"classify.models / deep.models) nor a path to a model.json"
            )
        info = load_model_info(s)
        name = str(info["name"])
        if name in run_models:
            raise ModelFileError(
                f"predict.model {s}: its name {name!r} is also a model of this run; rename one "
                f"(the name is the output folder results/predict/<name>/)"
            )
        out.append({"name": name, "json": s, "kind": info["kind"], "external": True, "info": info})
    names = [m["name"] for m in out]
    if len(set(names)) != len(names):
        raise ModelFileError(f"predict.model names {names} are not unique")
    return out


def check_predict_plates(plates, known, *, models=(), excluded=()) -> list[str]:
    """``predict.plates`` checked against the plates of the image table; when a model of this run
    predicts them they must be left out of its training (``classify.exclude_plates``)."""
    plates = [str(p) for p in (plates or [])]
    unknown = [p for p in plates if p not in set(map(str, known))]
    if unknown:
        raise ValueError(
            f"predict.plates {unknown} are not plates of this run's images ({sorted(map(str, known))}); "
            f"add their images to images.raw_dir or fix the plate names"
        )
    own = [m["name"] for m in models if not m.get("external")]
    trained_on = [p for p in plates if p not in set(map(str, excluded))]
    if own and trained_on:
        raise ValueError(
            f"predict.plates {trained_on} would also train model(s) {own} of this run; add them to "
            f"classify.exclude_plates so the model predicts plates it has not seen"
        )
    return plates


def planned_crop_type(model: dict, config: dict) -> str:
    """The crop type a torch model reads: from its model.json (another run's model) or from this
    run's ``deep`` settings (``deep.models.<name>.input``, else ``deep.input``, else
    ``nucleocentric``, the schema's default)."""
    if model.get("info"):
        return model_input(model["info"])
    deep = config.get("deep") or {}
    models = deep.get("models") or {}
    entry = (
        models.get(model["name"])
        if isinstance(models, dict)
        else next(
            (m for m in models if isinstance(m, dict) and m.get("name") == model["name"]), None
        )
    )
    for source in (entry or {}, deep):
        value = source.get("input") or source.get("crop_type")
        if isinstance(value, dict):
            value = value.get("crop_type")
        if value:
            return str(value)
    return "nucleocentric"


def display_names(filenames, raw_files) -> list[str]:
    """The name each image goes by in ``results.csv`` and ``image_summary.csv``: in named-files
    mode its path relative to ``images.raw_dir`` (``pyroptosis/1.jpg``, so two ``1.jpg`` in
    different folders stay apart), else the file name of its first raw file."""
    out = []
    for name, files in zip(filenames, raw_files, strict=True):
        name = "" if name is None or (isinstance(name, float) and name != name) else str(name)
        out.append(name or Path(str(files[0])).name)
    return out
