"""The edge of the public API: plugin code imports only what docs/plugin-api.md lists.

``eventrouter.__all__`` is what a source or sink may use and ``eventrouter.testing.__all__``
what its tests may use; every other module of the package is internal and may be renamed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from string import Template

import pytest

import eventrouter
import eventrouter.testing

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_CODE = ("plugins", "examples", "eventrouter/scaffold")
PUBLIC = {
    "eventrouter": set(eventrouter.__all__),
    "eventrouter.testing": set(eventrouter.testing.__all__),
}
#: what a scaffold template's ``$placeholders`` stand for, to parse it as the code it writes
TEMPLATE_VALUES = {
    "name": "demo",
    "dist": "eventrouter-demo",
    "module": "eventrouter_demo",
    "title": "Demo",
    "class_name": "Demo",
    "env_prefix": "DEMO",
    "core_version": "0",
}


def plugin_files() -> list[Path]:
    """Every Python file (and Python template) plugin authors write or copy."""
    found: list[Path] = []
    for directory in PLUGIN_CODE:
        for pattern in ("*.py", "*.py.tmpl"):
            found.extend(
                path
                for path in (ROOT / directory).rglob(pattern)
                if ".venv" not in path.parts and "build" not in path.parts
            )
    return sorted(found)


def parse(path: Path) -> ast.Module:
    text = path.read_text(encoding="utf-8")
    if path.name.endswith(".tmpl"):
        text = Template(text).substitute(TEMPLATE_VALUES)
    return ast.parse(text, filename=str(path))


def is_test_code(path: Path) -> bool:
    return "tests" in path.parts or path.name == "conftest.py"


def violations(tree: ast.Module, *, tests: bool) -> Iterator[str]:
    """``line: what`` for each use of eventrouter outside the public surface."""
    allowed = {"eventrouter", "eventrouter.testing"} if tests else {"eventrouter"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module != "eventrouter" and not module.startswith("eventrouter."):
                continue
            if module not in allowed:
                yield f"{node.lineno}: from {module} import ... (internal module)"
                continue
            for alias in node.names:
                if alias.name not in PUBLIC[module]:
                    yield f"{node.lineno}: from {module} import {alias.name} (not in __all__)"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("eventrouter.") and alias.name not in allowed:
                    yield f"{node.lineno}: import {alias.name} (internal module)"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "eventrouter"
            and node.attr not in PUBLIC["eventrouter"]
        ):
            yield f"{node.lineno}: eventrouter.{node.attr} (not in __all__)"


PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
GUIDES = ("docs/writing-plugins.md", "docs/hooks.md", "docs/plugin-api.md")


@pytest.mark.parametrize("guide", GUIDES)
def test_guides_teach_only_the_public_api(guide):
    blocks = PYTHON_BLOCK.findall((ROOT / guide).read_text(encoding="utf-8"))
    assert blocks
    for block in blocks:
        tests = "def test_" in block
        found = list(violations(ast.parse(block), tests=tests))
        assert found == [], f"{guide} shows code reaching past the public API: {found}"


def test_plugin_code_is_found():
    files = plugin_files()
    assert len(files) > 50
    assert any(path.name == "__init__.py.tmpl" for path in files)
    assert any(is_test_code(path) for path in files)


@pytest.mark.parametrize("path", plugin_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_plugin_code_imports_only_the_public_api(path):
    found = list(violations(parse(path), tests=is_test_code(path)))
    assert found == [], f"{path.relative_to(ROOT)} reaches past the public API: {found}"


@pytest.mark.parametrize(
    ("source", "tests", "expected"),
    [
        ("from eventrouter import Source, hookimpl", False, []),
        ("from eventrouter.sources import Source", False, ["1: from eventrouter.sources"]),
        ("from eventrouter import converter", False, ["1: from eventrouter import converter"]),
        ("import eventrouter.normalise", False, ["1: import eventrouter.normalise"]),
        ("import eventrouter\neventrouter.config", False, ["2: eventrouter.config"]),
        ("from eventrouter.testing import installed_types", False, ["1: from eventrouter.testing"]),
        ("from eventrouter.testing import installed_types", True, []),
        (
            "from eventrouter.testing import Registry",
            True,
            ["1: from eventrouter.testing import R"],
        ),
        ("from eventrouter_altur.parse import x", False, []),
    ],
)
def test_the_rule_itself(source, tests, expected):
    found = list(violations(ast.parse(source), tests=tests))
    assert len(found) == len(expected)
    for line, prefix in zip(found, expected, strict=True):
        assert line.startswith(prefix)


def documented_names() -> set[str]:
    """Names that head an entry (`` `name` ``) in a list of docs/plugin-api.md."""
    text = (ROOT / "docs" / "plugin-api.md").read_text(encoding="utf-8")
    return set(re.findall(r"^- `([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.MULTILINE))


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_is_documented(module):
    missing = sorted(PUBLIC[module] - documented_names())
    assert missing == [], f"{module} exports names docs/plugin-api.md does not describe"


def test_the_documentation_lists_nothing_else():
    exported = set().union(*PUBLIC.values())
    assert sorted(documented_names() - exported) == []


def test_public_names_are_importable():
    for module, names in PUBLIC.items():
        imported = __import__(module, fromlist=sorted(names))
        for name in names:
            assert hasattr(imported, name), f"{module}.{name}"
