"""``eventrouter new-plugin`` writes packages whose own tests pass out of the box."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from eventrouter.cli import cli


@pytest.mark.parametrize("kind", ["source", "sink"])
def test_new_plugin_installs_and_passes_its_own_tests(tmp_path, kind):
    result = CliRunner().invoke(
        cli, ["new-plugin", f"acme-{kind}", "--kind", kind, "--directory", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    package = tmp_path / f"eventrouter-acme-{kind}"
    assert sorted(p.name for p in package.iterdir()) == [
        "README.md",
        f"eventrouter_acme_{kind}",
        "pyproject.toml",
        "tests",
    ]

    # install it apart from the shared environment: a --target directory holds the package and
    # its entry points, and only the subprocess below sees it
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("EVENTROUTER_LOAD_PLUGINS", None)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=package,
        env=env,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout
    assert "failed" not in tests.stdout


def test_new_plugin_refuses_bad_names_and_existing_directories(tmp_path):
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
