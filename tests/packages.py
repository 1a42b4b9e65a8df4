"""A throwaway virtualenv in which documented shell commands run as written.

``Venv.create(path)`` makes a virtualenv (``python -m venv --without-pip``) that reuses what the
project's environment already has installed instead of downloading it again:

- a ``.pth`` file in its site-packages adds the project environment's site-packages (with the
  ``.pth`` files there, so the editable eventrouter and its plugins import);
- its ``bin`` holds the ``pip``, ``pytest`` and ``eventrouter`` console scripts of those reused
  distributions, written as pip writes console scripts, but run by the new environment's
  interpreter;
- ``PIP_NO_INDEX=1`` (nothing is downloaded: every dependency is already satisfied) and
  ``PIP_NO_BUILD_ISOLATION=0`` (which, as pip reads it, *disables* build isolation: the already
  installed setuptools builds the package).

``venv.sh(script, cwd=...)`` runs a shell script with that ``bin`` first on ``PATH`` (and the
project environment's ``bin`` removed from it), so ``pip install -e .`` installs into the
throwaway environment alone: the package and its entry points never leak into the project's
environment or the rest of the test run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["Venv", "bash", "passed"]

#: console scripts the documented commands call, from distributions the project has installed
SCRIPTS = ("pip", "pytest", "eventrouter")


class Venv:
    """A virtualenv at ``path`` that sees the project's installed packages (see module docs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"
        self.python = self.bin / "python"

    @classmethod
    def create(cls, path: Path) -> Venv:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(path)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        venv = cls(path)
        [site] = (path / "lib").glob("python3*/site-packages")
        reused = sysconfig.get_paths()["purelib"]
        (site / "_reuse_project_environment.pth").write_text(
            f"import site; site.addsitedir({reused!r})\n"
        )
        for name in SCRIPTS:
            [script] = entry_points(group="console_scripts", name=name)
            module, _, attribute = script.value.partition(":")
            path_to = venv.bin / name
            path_to.write_text(
                f"#!{venv.python}\n"
                "import sys\n"
                f"from {module} import {attribute.split('.')[0]}\n"
                f"sys.exit({attribute}())\n"
            )
            path_to.chmod(0o755)
        return venv

    def environ(self) -> dict[str, str]:
        project_bin = str(Path(sys.executable).parent)
        path = [self.bin.as_posix()] + [
            entry
            for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and entry != project_bin
        ]
        environ = {
            **os.environ,
            "PATH": os.pathsep.join(path),
            "VIRTUAL_ENV": str(self.path),
            "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        for name in ("PYTHONPATH", "EVENTROUTER_LOAD_PLUGINS", "PYTEST_ADDOPTS", "PYTHONHOME"):
            environ.pop(name, None)
        return environ

    def sh(
        self, script: str, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash (``-e``: the first failing command fails it) in ``cwd``."""
        return bash(script, cwd=cwd, env={**self.environ(), **(env or {})}, timeout=timeout)


def bash(
    script: str, *, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``script`` run with bash in ``cwd``, stopping at the first failing command."""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def passed(output: str) -> int:
    """How many tests pytest's summary line says passed (0 when it says nothing)."""
    found = re.search(r"=+ (\d+) passed[ ,]", output)
    return int(found[1]) if found else 0
