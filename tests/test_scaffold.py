"""``eventrouter new-plugin`` writes packages whose own tests pass out of the box."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from eventrouter.cli import cli
from tests.packages import install_apart, run_in


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

    site = tmp_path / "site"
    install_apart(package, site)
    tests = run_in(
        site, package, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")
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
