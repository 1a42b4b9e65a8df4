"""Every code block of docs/writing-plugins.md is tested.

Each block is tagged with an HTML comment saying what it is, and is tested as such:

- ``<!-- run: scaffold -->``: run as written (bash, stopping at the first failing command) in an
  empty directory of a throwaway virtualenv; it must scaffold, install and pass its tests;
- ``<!-- file: PATH -->``: written to ``PATH`` in the guide's package directory;
- ``<!-- run -->``: run as written in that directory, in a second throwaway virtualenv: it
  installs the package the file blocks make (``pip install -e``) and runs its tests, every one
  of which must pass;
- ``<!-- config: NAME -->``: written to ``NAME`` in a directory of its own;
- ``<!-- console -->``: each ``$ COMMAND`` is run there, in the virtualenv the package was
  installed in, and must print exactly the lines shown under it.

The virtualenvs (``tests/packages.py``) reuse the packages installed in the project's
environment, so ``pip`` downloads nothing (``PIP_NO_INDEX``) and builds with the installed
setuptools (no build isolation); what they install stays in them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.packages import Venv, passed

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"
BLOCK = re.compile(
    r"^<!-- (?P<tag>file|config|run|console)(?:: (?P<arg>\S+))? -->\n"
    r"```(?P<lang>\w+)\n(?P<code>.*?)^```$",
    re.S | re.M,
)
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)

#: what the tagged blocks must be, in order: kind, argument, language
EXPECTED_BLOCKS = [
    ("run", "scaffold", "bash"),
    ("file", "pyproject.toml", "toml"),
    ("file", "eventrouter_acme/__init__.py", "python"),
    ("file", "eventrouter_acme/source.py", "python"),
    ("file", "tests/test_source.py", "python"),
    ("file", "eventrouter_acme/sink.py", "python"),
    ("config", "eventrouter.toml", "toml"),
    ("config", "broken.toml", "toml"),
    ("console", None, "console"),
    ("file", "tests/test_router.py", "python"),
    ("run", None, "bash"),
]
#: the tests the guide's package has (test functions, parametrised cases counted): all must pass
GUIDE_TESTS = 12
#: the tests of a scaffolded source package
SCAFFOLD_SOURCE_TESTS = 8
#: the secrets the guide's config reads from the environment
SECRETS = {"ACME_SECRET": "a" * 16, "HELPDESK_TOKEN": "t" * 16}


def blocks(tag: str, arg: str | None = None) -> list[re.Match[str]]:
    return [
        m
        for m in BLOCK.finditer(GUIDE.read_text())
        if m["tag"] == tag and (arg is None or m["arg"] == arg)
    ]


def test_every_code_block_is_tagged_and_tested():
    text = GUIDE.read_text()
    tagged = list(BLOCK.finditer(text))
    assert [(m["tag"], m["arg"], m["lang"]) for m in tagged] == EXPECTED_BLOCKS
    assert len(FENCE.findall(text)) == len(tagged), "a fenced block in the guide is not tagged"
    # an indented code block (four spaces after a blank line, outside fences) cannot be tagged
    assert not re.search(r"\n\n(    |\t)\S", FENCE.sub("", text)), "an indented code block"


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Venv, subprocess.CompletedProcess[str]]:
    """The guide's package written out, installed and tested by its ``run`` block."""
    root = tmp_path_factory.mktemp("guide")
    package = root / "eventrouter-acme"
    for block in blocks("file"):
        path = package / block["arg"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block["code"])
    venv = Venv.create(root / "venv")
    [run] = [m for m in blocks("run") if m["arg"] is None]
    return venv, venv.sh(run["code"], cwd=package)


def test_the_guide_package_installs_and_passes_its_own_tests(installed):
    _, result = installed
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Successfully installed eventrouter-acme-0.1.0" in output, output
    assert passed(output) == GUIDE_TESTS, output


def test_the_config_blocks_check_as_the_console_block_shows(installed, tmp_path):
    venv, _ = installed
    for block in blocks("config"):
        (tmp_path / block["arg"]).write_text(block["code"])
    [console] = blocks("console")
    sessions = re.split(r"^\$ ", console["code"], flags=re.M)
    assert sessions[0] == "", "the console block must start with '$ COMMAND'"
    assert len(sessions) == 3, "expected two commands"
    for session in sessions[1:]:
        command, *shown = session.rstrip("\n").split("\n")
        result = venv.sh(command, cwd=tmp_path, env=SECRETS, timeout=120)
        printed = (result.stdout + result.stderr).rstrip("\n").split("\n")
        assert printed == shown, f"$ {command}\n{result.stdout}{result.stderr}"
        failing = shown[0].startswith("Error:")
        assert result.returncode == (1 if failing else 0), command


def test_the_scaffold_commands_work_as_shown(tmp_path):
    [scaffold] = blocks("run", "scaffold")
    venv = Venv.create(tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    result = venv.sh(scaffold["code"], cwd=work)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert (work / "eventrouter-acme" / "eventrouter_acme" / "__init__.py").is_file()
    assert "Successfully installed eventrouter-acme-0.1.0" in output, output
    assert passed(output) == SCAFFOLD_SOURCE_TESTS, output
