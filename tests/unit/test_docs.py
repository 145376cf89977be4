"""The docs stay true: the config reference is the schema's, and every path, make target, config
key and hcsflow name a doc mentions exists."""

import ast
import re
from pathlib import Path

import yaml

from conftest import REPO
from hcsflow.config_reference import render_markdown

SCHEMA = yaml.safe_load((REPO / "config" / "schema" / "config.schema.yaml").read_text())
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# top-level folders of the repository a doc may name by path
REPO_DIRS = ("scripts/", "rules/", "config/", "docs/", "tests/", "profiles/", "envs/", "report/")
FILE_EXTENSIONS = {
    "tsv", "csv", "json", "parquet", "yaml", "yml", "png", "tif", "tiff", "html", "log", "pt",
    "zarr", "txt", "md", "smk", "py", "xlsx", "joblib", "npz", "jpg", "ok", "rst", "nd2", "toml",
}  # fmt: skip


def code_spans(text: str) -> list[str]:
    """Inline code spans of a Markdown text (fenced blocks excluded)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", text)


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


def schema_has(key: str, node: dict = SCHEMA) -> bool:
    """Whether a dotted config key (``classify.split.by``) is in the schema; ``<name>`` or any
    segment matches the keys of a mapping of user-chosen names."""
    head, _, rest = key.partition(".")
    props = node.get("properties") or {}
    alternatives = [node] + [a for a in node.get("oneOf", []) + node.get("anyOf", []) if a]
    for alt in alternatives:
        props = {**props, **(alt.get("properties") or {})}
    if head in props:
        child = props[head]
    elif isinstance(node.get("additionalProperties"), dict):
        child = node["additionalProperties"]  # a user-chosen name, e.g. classify.models.RF
    else:
        return False
    return not rest or schema_has(rest, child)


def module_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def hcsflow_name_exists(dotted: str) -> bool:
    """``hcsflow.a.b.c``: a package / module path, optionally ending in a name defined there."""
    parts = dotted.split(".")[1:]
    where = REPO / "scripts" / "hcsflow"
    for i, part in enumerate(parts):
        if (where / part / "__init__.py").exists():
            where = where / part
            continue
        if (where / f"{part}.py").exists():
            rest = parts[i + 1 :]
            return len(rest) <= 1 and (not rest or rest[0] in module_names(where / f"{part}.py"))
        init = where / "__init__.py"
        return i == len(parts) - 1 and init.exists() and part in module_names(init)
    return True


def problems_in(text: str) -> list[str]:
    found = []
    targets = make_targets()
    for span in code_spans(text):
        for m in re.finditer(r"\bmake ([a-z][\w-]*)", span):
            if m.group(1) not in targets:
                found.append(f"make target {m.group(1)!r} (in `{span}`)")
        for m in re.finditer(r"\bhcsflow(?:\.[A-Za-z_]\w*)+", span):
            if not hcsflow_name_exists(m.group(0).rstrip(".")):
                found.append(f"library name {m.group(0)!r}")
        token = span.strip().split(" ")[0].rstrip(",:;")
        if token.startswith(REPO_DIRS) and not re.search(r"[{<*]|\.\.\.", token):
            if not (REPO / token).exists():
                found.append(f"path {token!r}")
        key = re.fullmatch(r"([a-z_]+(?:\.[\w<>]+)+)(?::.*)?", span.strip())
        if key and key.group(1).split(".")[0] in SCHEMA["properties"]:
            dotted = key.group(1)
            if dotted.rsplit(".", 1)[-1] not in FILE_EXTENSIONS and not schema_has(dotted):
                found.append(f"config key {dotted!r}")
    return found


def test_the_checker_catches_what_does_not_exist():
    assert problems_in("`make test` `make nosuchtarget`") == [
        "make target 'nosuchtarget' (in `make nosuchtarget`)"
    ]
    assert problems_in("`classify.split.by` `classify.models.RF.params` `images.tsv`") == []
    assert problems_in("`classify.nosuchkey`") == ["config key 'classify.nosuchkey'"]
    assert problems_in("`hcsflow.classify.voting` `hcsflow.io.write_table`") == []
    assert problems_in("`hcsflow.voting`") == ["library name 'hcsflow.voting'"]
    assert problems_in("`rules/common.smk` `results/{plate}/x.tif`") == []
    assert problems_in("`rules/nosuch.smk`") == ["path 'rules/nosuch.smk'"]


def test_the_config_reference_is_generated_from_the_current_schema():
    current = (REPO / "docs" / "config.md").read_text()
    assert current == render_markdown(SCHEMA), "docs/config.md is out of date: run `make docs`"


def test_docs_name_only_what_exists():
    found = {doc.relative_to(REPO).as_posix(): problems_in(doc.read_text()) for doc in DOCS}
    found = {doc: p for doc, p in found.items() if p}
    assert not found, found


def test_readme_is_short_and_every_doc_is_linked_from_it():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for doc in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README does not link docs/{doc.name}"
