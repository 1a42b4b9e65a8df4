"""Every hook has a section in docs/hooks.md headed by its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from eventrouter import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOKS = [
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if getattr(fn, "eventrouter_spec", None) is not None
]


def test_there_are_hooks():
    assert len(HOOKS) == 7


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_under_its_signature(name):
    signature = inspect.signature(getattr(hookspecs, name))
    heading = f"## {name}({', '.join(signature.parameters)})"
    text = (DOCS / "hooks.md").read_text()
    assert heading in text, f"docs/hooks.md lacks a section headed {heading!r}"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "```python" in section, f"the {name} section has no example"


def test_documented_hooks_exist():
    text = (DOCS / "hooks.md").read_text()
    documented = re.findall(r"^## (\w+)\(", text, flags=re.MULTILINE)
    assert sorted(documented) == sorted(HOOKS)
