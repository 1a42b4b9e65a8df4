"""Installing a generated plugin package apart from the shared environment, and running its tests.

pip installs it into a ``--target`` directory that only the subprocesses given ``PYTHONPATH``
see, so the package and its entry points never leak into the rest of the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["install_apart", "run_in"]


def install_apart(package: Path, site: Path) -> None:
    """Build and install ``package`` (without dependencies) into the directory ``site``."""
    result = subprocess.run(
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
        check=False,
    )
    assert result.returncode == 0, result.stderr


def run_in(
    site: Path, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` with the packages installed in ``site`` importable."""
    environ = {**os.environ, "PYTHONPATH": str(site), **(env or {})}
    environ.pop("EVENTROUTER_LOAD_PLUGINS", None)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env=environ,
        check=False,
    )
