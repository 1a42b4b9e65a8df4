"""``eventrouter new-plugin`` writes packages whose own tests pass out of the box.

The command is run as a user runs it, in a throwaway virtualenv (``tests/packages.py``), and so
is the next step it prints, ``pip install -e 'eventrouter-NAME[test]' && pytest eventrouter-NAME``:
an editable install of the generated package, then its generated tests.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventrouter.cli import cli
from tests.packages import Venv, passed

RUFF = Path(sys.executable).parent / "ruff"

#: the tests each kind of generated package has, all of which must pass
GENERATED_TESTS = {"source": 8, "sink": 4}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return Venv.create(tmp_path_factory.mktemp("scaffold") / "venv")


@pytest.mark.parametrize("kind", ["source", "sink"])
def test_new_plugin_installs_and_passes_its_own_tests(venv: Venv, tmp_path: Path, kind: str):
    result = venv.sh(f"eventrouter new-plugin acme-{kind} --kind {kind}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    package = tmp_path / f"eventrouter-acme-{kind}"
    assert sorted(p.name for p in package.iterdir()) == [
        "README.md",
        f"eventrouter_acme_{kind}",
        "pyproject.toml",
        "tests",
    ]
    lint = subprocess.run(
        [str(RUFF), "check", "--isolated", "--no-cache", "--quiet", str(package)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    [advice] = [
        line.removeprefix("next: ")
        for line in result.stdout.splitlines()
        if line.startswith("next: ")
    ]
    assert advice == f"pip install -e '{package.name}[test]' && pytest {package.name}"
    run = venv.sh(advice, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert f"Successfully installed eventrouter-acme-{kind}-0.1.0" in run.stdout, output
    assert passed(run.stdout) == GENERATED_TESTS[kind], output
    with pytest.raises(PackageNotFoundError):  # installed in the throwaway environment only
        distribution(f"eventrouter-acme-{kind}")


def test_new_plugin_refuses_bad_names_and_existing_directories(tmp_path: Path):
    result = CliRunner().invoke(
        cli, ["new-plugin", "Bad Name", "--kind", "sink", "--directory", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "use lower-case letters" in result.output
    (tmp_path / "eventrouter-taken").mkdir()
    result = CliRunner().invoke(
        cli, ["new-plugin", "taken", "--kind", "sink", "--directory", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "already exists" in result.output
