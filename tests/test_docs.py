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


ROOT = DOCS.parent
PAGES = sorted(
    [
        ROOT / "README.md",
        *DOCS.glob("*.md"),
        *ROOT.glob("plugins/*/README.md"),
        *ROOT.glob("examples/*/README.md"),
    ]
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which is not there"


def test_nothing_cites_a_file_outside_the_repository():
    """Provider facts live in docs/provider-reference.md, not in a reference file left behind."""
    tracked = [
        path
        for path in [*PAGES, *ROOT.glob("eventrouter/**/*.py"), *ROOT.glob("plugins/*/**/*.py")]
        if "build" not in path.relative_to(ROOT).parts  # a wheel's build copy is not the source
    ]
    for path in tracked:
        text = path.read_text()
        for outside in ("PROVIDERS.md", "/work/shared", "seeds/"):
            assert outside not in text, f"{path.relative_to(ROOT)} cites {outside}"
