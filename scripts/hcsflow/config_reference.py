"""The config reference (docs/config.md), generated from the schema's own descriptions.

Every key of ``config/schema/config.schema.yaml`` becomes one row: its dotted path, type, default
and meaning. Keys under a mapping of user-chosen names (``classify.models.<name>``) are written
with a ``<name>`` placeholder. The schema is the only place a key is described; ``make docs``
rewrites the page and a unit test fails when it is out of date.

    PYTHONPATH=scripts python -m hcsflow.config_reference config/schema/config.schema.yaml \
        -o docs/config.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEADER = """# Configuration reference

Generated from `config/schema/config.schema.yaml` by `make docs`; do not edit by hand (a test fails
when this page and the schema disagree). The Snakefile validates a config against the schema
before any job runs: unknown keys, wrong types and missing keys stop the run with a message naming
the key, and the defaults below are filled in. Cross-key checks the schema cannot express are in
`hcsflow.checks`. How to write a config for a real plate: [usage.md](usage.md).
"""


def _one_line(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def type_of(node: dict) -> str:
    """A short type for a schema node: ``integer``, ``string (a | b)``, ``number or null``, ..."""
    if "enum" in node:
        values = ", ".join("null" if v is None else str(v) for v in node["enum"])
        return f"one of: {values}"
    for combo in ("oneOf", "anyOf"):
        if combo in node:
            return " or ".join(dict.fromkeys(type_of(alt) for alt in node[combo]))
    kind = node.get("type")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and isinstance(node.get("items"), dict):
        inner = type_of(node["items"])
        return f"list of {inner}" if inner else "list"
    if kind is None and "const" in node:
        return json.dumps(node["const"])
    return kind or ""


def default_of(node: dict) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if isinstance(value, (dict, list)) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return _one_line(json.dumps(value))


def _describe(node: dict) -> str:
    parts = []
    if "description" in node:
        parts.append(_one_line(node["description"]))
    for bound, word in (("minimum", ">="), ("maximum", "<=")):
        if bound in node:
            parts.append(f"({word} {node[bound]})")
    return " ".join(parts)


def reference_rows(node: dict, path: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key below ``node``, depth first, schema order."""
    rows = []
    for name, child in (node.get("properties") or {}).items():
        key = f"{path}.{name}" if path else name
        rows.append((key, type_of(child), default_of(child), _describe(child)))
        rows += reference_rows(child, key)
        # a mapping of user-chosen names whose values have known keys (e.g. classify.models)
        extra = child.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            rows += reference_rows(extra, f"{key}.<name>")
        for alt in child.get("oneOf", []) + child.get("anyOf", []):
            if isinstance(alt, dict) and alt.get("properties"):
                rows += [r for r in reference_rows(alt, key) if r[0] not in {x[0] for x in rows}]
    return rows


def render_markdown(schema: dict) -> str:
    """docs/config.md: one table per top-level section, in schema order."""
    out = [HEADER]
    for section, node in (schema.get("properties") or {}).items():
        out.append(f"\n## `{section}`\n\n")
        if node.get("description"):
            out.append(_one_line(node["description"]).replace("\\|", "|") + "\n")
        rows = reference_rows(node, section)
        if not rows:
            kind, default = type_of(node), default_of(node)
            out.append(f"\nType: {kind}" + (f"; default: `{default}`" if default else "") + ".\n")
            continue
        out.append("\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n")
        for key, kind, default, meaning in rows:
            default_cell = f"`{default}`" if default else ""
            out.append(f"| `{key}` | {kind} | {default_cell} | {meaning} |\n")
    return "".join(out)


def main(argv=None) -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schema", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    text = render_markdown(yaml.safe_load(args.schema.read_text()))
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
