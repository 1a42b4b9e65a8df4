"""Every code block of docs/writing-plugins.md is tested.

Blocks tagged ``<!-- file: PATH -->`` are written out as a package, installed apart from the
shared environment, and the package's own tests (themselves a block of the guide) are run; the
``<!-- config -->`` block must validate against the installed plugin; the ``<!-- run -->`` block
is what this test does, command for command.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.packages import install_apart, run_in

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"
BLOCK = re.compile(
    r"<!-- (file: (?P<path>\S+)|(?P<kind>config|run)) -->\n```(?P<lang>\w+)\n(?P<code>.*?)```", re.S
)


def blocks() -> list[re.Match[str]]:
    return list(BLOCK.finditer(GUIDE.read_text()))


def test_every_code_block_is_tagged():
    text = GUIDE.read_text()
    fenced = len(re.findall(r"^```\w+$", text, flags=re.M))
    assert fenced == len(blocks()), (
        "a code block in the guide is not tagged as a file, config or run block"
    )
    assert [m["kind"] for m in blocks() if m["kind"]] == ["config", "run"]
    assert [m["lang"] for m in blocks() if m["kind"] == "run"] == ["bash"]


@pytest.fixture(scope="module")
def guide_package(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("guide")
    package = root / "eventrouter-acme"
    for match in blocks():
        if match["path"]:
            path = package / match["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(match["code"])
    site = root / "site"
    install_apart(package, site)
    return package, site


def test_the_guide_package_passes_its_own_tests(guide_package):
    package, site = guide_package
    result = run_in(site, package, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_guide_config_validates(guide_package, tmp_path):
    _, site = guide_package
    [config] = [m["code"] for m in blocks() if m["kind"] == "config"]
    tomllib.loads(config)
    (tmp_path / "eventrouter.toml").write_text(config)
    secrets = {"ACME_SECRET": "a" * 16, "HELPDESK_TOKEN": "t" * 16}
    result = run_in(
        site, tmp_path, "-m", "eventrouter", "check", "--config", "eventrouter.toml", env=secrets
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK — 1 sources, 1 sinks, 1 routes" in result.stdout
