"""``eventrouter new-plugin``: write a complete source or sink package from templates."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template

from eventrouter import __version__

__all__ = ["ScaffoldError", "write_plugin"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


class ScaffoldError(Exception):
    """The plugin cannot be written (bad name, directory exists)."""


def write_plugin(name: str, *, kind: str, directory: Path) -> Path:
    """Write ``eventrouter-NAME`` under ``directory``; return the package directory."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"NAME {name!r}: use lower-case letters, digits and '-', e.g. 'zendesk' or 'my-crm'"
        )
    if kind not in ("source", "sink"):
        raise ScaffoldError(f"--kind {kind!r}: expected 'source' or 'sink'")
    dist = f"eventrouter-{name}"
    module = f"eventrouter_{name.replace('-', '_')}"
    target = directory / dist
    if target.exists():
        raise ScaffoldError(f"{target} already exists; choose another --directory or remove it")
    values = {
        "name": name,
        "dist": dist,
        "module": module,
        "title": name.replace("-", " ").title(),
        "class_name": "".join(part.title() for part in re.split(r"[-_]", name)),
        "env_prefix": name.upper().replace("-", "_"),
        "core_version": __version__,
    }
    templates = files(__package__) / kind
    outputs = {
        "pyproject.toml.tmpl": "pyproject.toml",
        "README.md.tmpl": "README.md",
        "module/__init__.py.tmpl": f"{module}/__init__.py",
        "tests/test_module.py.tmpl": f"tests/test_{module}.py",
    }
    for source, destination in outputs.items():
        text = Template(templates.joinpath(source).read_text(encoding="utf-8")).substitute(values)
        path = target / destination
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (target / module / "py.typed").write_text("")
    return target
