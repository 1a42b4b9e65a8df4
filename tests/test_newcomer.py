"""A newcomer's first hour: the README and the plugin guide, followed literally on a fresh clone.

One clone per session (module-scoped fixtures), set up by the README's own ``make serve``:

- the clone is ``git clone`` of this repository, with the working tree's uncommitted changes and
  untracked files laid over it, so what is about to be committed is what is tested;
- ``make serve`` creates ``.venv`` and installs everything as the README says; its output up to
  the server's first log line must be the Makefile's step lines and nothing else (no setuptools
  or pip warning block), and the server must warn once that the example uses public secrets;
- the Quickstart's second block runs as written, in a second shell, against that server;
- "Installing without make": ``make wheels``, then both ``pip install`` lines, in a fresh
  virtualenv;
- every block of docs/writing-plugins.md, tagged with what it is, in a directory outside the
  clone, with the clone's ``.venv`` activated as the guide says:

  - ``<!-- run: NAME -->``: run as written (bash, stopping at the first failing command);
  - ``<!-- file: PATH -->``: written to ``PATH`` in the guide's package directory;
  - ``<!-- config: NAME -->``: written to ``NAME`` in the package directory;
  - ``<!-- console -->``: each ``$ COMMAND`` is run in the package directory and must print
    exactly the lines shown under it.

pip reads no configuration file (``PIP_CONFIG_FILE`` is the null device) so that the output is
what a newcomer's pip prints, not this machine's index settings. ``make test`` itself is not run
here: it is what runs this test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packages import bash, passed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "writing-plugins.md"
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)
BLOCK = re.compile(
    r"^<!-- (?P<tag>file|config|run|console)(?:: (?P<arg>\S+))? -->\n"
    r"```(?P<lang>\w+)\n(?P<code>.*?)^```$",
    re.S | re.M,
)
#: what the guide's tagged blocks must be, in order: kind, argument, language
GUIDE_BLOCKS = [
    ("run", "scaffold", "bash"),
    ("file", "pyproject.toml", "toml"),
    ("file", "eventrouter_acme/__init__.py", "python"),
    ("file", "eventrouter_acme/source.py", "python"),
    ("file", "tests/test_source.py", "python"),
    ("file", "eventrouter_acme/sink.py", "python"),
    ("run", "install", "bash"),
    ("config", "eventrouter.toml", "toml"),
    ("config", "broken.toml", "toml"),
    ("console", None, "console"),
    ("file", "tests/test_router.py", "python"),
    ("run", "test", "bash"),
    ("run", "build", "bash"),
]
#: the tests of the guide's package (parametrised cases counted) and of a scaffolded source
GUIDE_TESTS = 12
SCAFFOLD_SOURCE_TESTS = 8
#: the secrets the guide's config reads from the environment
GUIDE_SECRETS = {"ACME_SECRET": "a" * 16, "HELPDESK_TOKEN": "t" * 16}
#: what the example config listens on (the Quickstart's commands post there)
EXAMPLE_PORT = 8080
#: what a newcomer's terminal may show while make sets up .venv: the Makefile's own lines
SETUP_LINE = re.compile(r"^(\[\d/\d\] .+|ready: .+)$")


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without its virtualenv, pytest's or the test run's settings."""
    project_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        # (MAKE*: `make test` runs this test, and a nested make would say "Entering directory")
        if not key.startswith(
            ("PYTEST_", "EVENTROUTER_", "VIRTUAL_ENV", "PYTHON", "MAKE", "MFLAGS")
        )
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p != project_bin
    )
    env["PIP_CONFIG_FILE"] = os.devnull
    return {**env, **extra}


def sh(
    script: str, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``script`` run with bash, stopping at the first failing command."""
    return bash(script, cwd=cwd, env=env or environ(), timeout=timeout)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def sh_blocks(text: str, heading: str) -> list[str]:
    """The ```sh blocks of a README section (up to the next heading of its level or above)."""
    level = heading.split(" ", 1)[0]
    section = text.split(f"\n{heading}\n", 1)[1]
    section = re.split(rf"\n#{{1,{len(level)}}} ", section, maxsplit=1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def guide_blocks(tag: str, arg: str | None = None) -> list[re.Match[str]]:
    return [
        m
        for m in BLOCK.finditer(GUIDE.read_text())
        if m["tag"] == tag and (arg is None or m["arg"] == arg)
    ]


def test_every_guide_block_is_tagged_and_tested():
    text = GUIDE.read_text()
    tagged = list(BLOCK.finditer(text))
    assert [(m["tag"], m["arg"], m["lang"]) for m in tagged] == GUIDE_BLOCKS
    assert len(FENCE.findall(text)) == len(tagged), "a fenced block in the guide is not tagged"
    # an indented code block (four spaces after a blank line, outside fences) cannot be tagged
    assert not re.search(r"\n\n(    |\t)\S", FENCE.sub("", text)), "an indented code block"


# -- the clone, set up and served by `make serve` ---------------------------------------------


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    target = tmp_path_factory.mktemp("newcomer") / "eventrouter"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    # the working tree as it is: uncommitted changes, then untracked files
    diff = subprocess.run(
        ["git", "-C", str(ROOT), "diff", "HEAD", "--binary"], capture_output=True, check=True
    ).stdout
    if diff:
        subprocess.run(["git", "-C", str(target), "apply"], input=diff, check=True)
    untracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, untracked):
        path = os.fsdecode(name)
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target / path)
    return target


class Served:
    """``make serve`` running in the clone, and everything it printed so far."""

    def __init__(self, clone: Path) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            ["make", "serve"],
            cwd=clone,
            env=environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # make and the eventrouter it starts stop together
        )

    def wait_for(self, pattern: str, *, timeout: float) -> None:
        """Read lines until one matches ``pattern``; fail when make exits or time runs out."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                pytest.fail("make serve exited:\n" + "\n".join(self.lines))
            self.lines.append(line.rstrip("\n"))
            if re.search(pattern, line):
                return
        pytest.fail(f"no line matching {pattern!r} in {timeout} s:\n" + "\n".join(self.lines))

    def stop(self) -> str:
        """SIGTERM to make and the eventrouter it runs; what they printed after the lines read."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            rest, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            rest, _ = self.process.communicate()
        return rest or ""


@pytest.fixture(scope="module")
def served(clone: Path) -> Iterator[Served]:
    """The README's ``make serve``, from a clone without .venv, until the server listens."""
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", EXAMPLE_PORT)) == 0:
            pytest.fail(f"127.0.0.1:{EXAMPLE_PORT}, the example config's port, is taken")
    server = Served(clone)
    try:
        server.wait_for(r"listening on http://127\.0\.0\.1:8080", timeout=900)
        yield server
    finally:
        server.stop()


def test_make_serve_sets_up_quietly_then_warns_of_the_public_secrets(served):
    setup = []
    for line in served.lines:
        if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line):  # eventrouter's first log line
            break
        if not line.startswith(("python3 -m venv", ".venv/bin/eventrouter serve")):
            setup.append(line)  # (make echoes the serve command itself)
    assert setup, served.lines
    unexpected = [line for line in setup if not SETUP_LINE.match(line)]
    assert not unexpected, "make serve printed more than its steps:\n" + "\n".join(setup)
    assert len(setup) == 4, setup

    warnings = [line for line in served.lines if " WARNING " in line]
    assert len(warnings) == 1, served.lines
    [warning] = warnings
    for source, variable in [
        ("altur", "ALTUR_WEBHOOK_SECRET"),
        ("exotel", "EXOTEL_TOKEN"),
        ("pelcro", "PELCRO_WEBHOOK_SECRET"),
        ("webhooks", "STANDARD_WEBHOOKS_SECRET"),
    ]:
        assert f"sources.{source}" in warning
        assert variable in warning
    assert "examples/eventrouter.toml" in warning
    assert "development-only" not in warning  # names the variables, never the values


def test_the_quickstart_runs_as_written(served, clone):
    blocks = sh_blocks(README.read_text(), "## Quickstart")
    assert blocks[0].startswith("make serve"), blocks
    [quickstart] = [b for b in blocks if "eventrouter send" in b]
    *commands, show_archive = quickstart.strip("\n").split("\n")
    assert show_archive.startswith("cat examples/archive/"), show_archive

    result = sh("\n".join(commands), cwd=clone)
    printed = output(result)
    assert result.returncode == 0, printed
    assert printed.count('200 {"status": "accepted"') == 3, printed
    listed = [line for line in result.stdout.splitlines() if " UTC evt_" in line]
    assert len(listed) == 3, printed

    archive = clone / "examples" / "archive"
    for _ in range(200):  # the CSV sink writes each row a moment after the event is stored
        rows = sum(len(p.read_text().splitlines()) - 1 for p in archive.glob("*.csv"))
        if rows >= 3:
            break
        time.sleep(0.05)
    result = sh(show_archive, cwd=clone)
    assert result.returncode == 0, output(result)
    assert len(result.stdout.splitlines()) == 4, result.stdout  # a header and three rows


def test_installing_without_make_works_as_written(clone, served, tmp_path):
    """``make wheels``, then both ``pip install`` lines, in a virtualenv of their own."""
    blocks = sh_blocks(README.read_text(), "### Installing without make")
    [by_path] = [b for b in blocks if "./plugins/" in b]
    [wheels] = [b for b in blocks if "make wheels" in b]
    make, install_wheels = wheels.strip("\n").split("\n")
    assert make == "make wheels"

    result = sh(make, cwd=clone)
    assert result.returncode == 0, output(result)
    built = sorted(p.name.split("-")[0] for p in (clone / "dist").glob("*.whl"))
    plugins = [*clone.glob("plugins/*/pyproject.toml"), *clone.glob("examples/*/pyproject.toml")]
    assert built == sorted(["eventrouter", *(p.parent.name.replace("-", "_") for p in plugins)])

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = environ(PATH=f"{venv / 'bin'}{os.pathsep}{environ()['PATH']}", VIRTUAL_ENV=str(venv))
    result = sh(install_wheels, cwd=clone, env=env, timeout=600)
    assert result.returncode == 0, output(result)
    [installed] = [line for line in result.stdout.splitlines() if "Successfully installed" in line]
    assert {"eventrouter-0.1.0", "eventrouter-slack-0.1.0"} <= set(installed.split()), installed
    result = sh(by_path, cwd=clone, env=env, timeout=600)
    assert result.returncode == 0, output(result)
    result = sh("eventrouter plugins", cwd=clone, env=env)
    for plugin in ("altur", "csv", "slack"):
        assert f"\n{plugin}  [eventrouter-{plugin} 0.1.0]" in "\n" + result.stdout, result.stdout
    # the scaffold's templates are package data: they are in the wheel, not only in the clone
    result = sh(
        f"eventrouter new-plugin probe --kind sink --directory {tmp_path}", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, output(result)
    assert (tmp_path / "eventrouter-probe" / "eventrouter_probe" / "__init__.py").is_file()


# -- the plugin guide, with the clone's .venv activated ----------------------------------------


@pytest.fixture(scope="module")
def guide_env(clone: Path, served: Served) -> dict[str, str]:
    """The environment ``source .venv/bin/activate`` gives, in the clone `make serve` set up."""
    bin_dir = clone / ".venv" / "bin"
    return environ(
        PATH=f"{bin_dir}{os.pathsep}{environ()['PATH']}", VIRTUAL_ENV=str(bin_dir.parent)
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's "directory of your own, outside the clone"."""
    return tmp_path_factory.mktemp("src")


@pytest.fixture(scope="module")
def scaffolded(workspace: Path, guide_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    [scaffold] = guide_blocks("run", "scaffold")
    return sh(scaffold["code"], cwd=workspace, env=guide_env)


@pytest.fixture(scope="module")
def package(
    workspace: Path, guide_env: dict[str, str], scaffolded: subprocess.CompletedProcess[str]
) -> Path:
    """The guide's package, written out next to the scaffolded one and installed as it says."""
    root = workspace / "eventrouter-acme"
    for block in guide_blocks("file") + guide_blocks("config"):
        path = root / block["arg"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block["code"])
    [install] = guide_blocks("run", "install")
    result = sh(install["code"], cwd=root, env=guide_env)
    assert result.returncode == 0, output(result)
    assert "Successfully installed eventrouter-acme-0.1.0" in result.stdout, output(result)
    return root


def test_the_scaffold_commands_work_as_shown(scaffolded, workspace):
    printed = output(scaffolded)
    assert scaffolded.returncode == 0, printed
    assert (workspace / "eventrouter-hello" / "eventrouter_hello" / "__init__.py").is_file()
    assert "Successfully installed eventrouter-hello-0.1.0" in printed, printed
    assert passed(printed) == SCAFFOLD_SOURCE_TESTS, printed


def test_the_guide_package_installs_beside_the_scaffolded_one(package, guide_env):
    result = sh("eventrouter plugins", cwd=package, env=guide_env)
    assert "\nacme  [eventrouter-acme 0.1.0]" in "\n" + result.stdout, result.stdout
    assert "\nhello  [eventrouter-hello 0.1.0]" in "\n" + result.stdout, result.stdout


def test_the_config_blocks_check_as_the_console_block_shows(package, guide_env):
    [console] = guide_blocks("console")
    sessions = re.split(r"^\$ ", console["code"], flags=re.M)
    assert sessions[0] == "", "the console block must start with '$ COMMAND'"
    assert len(sessions) == 3, "expected two commands"
    for session in sessions[1:]:
        command, *shown = session.rstrip("\n").split("\n")
        result = sh(command, cwd=package, env={**guide_env, **GUIDE_SECRETS}, timeout=120)
        printed = output(result).rstrip("\n").split("\n")
        assert printed == shown, f"$ {command}\n{output(result)}"
        failing = shown[0].startswith("Error:")
        assert result.returncode == (1 if failing else 0), command


def test_the_guide_package_passes_its_own_tests(package, guide_env):
    [run] = guide_blocks("run", "test")
    result = sh(run["code"], cwd=package, env=guide_env)
    assert result.returncode == 0, output(result)
    assert passed(output(result)) == GUIDE_TESTS, output(result)


def test_the_guide_package_builds(package, guide_env):
    [build] = guide_blocks("run", "build")
    result = sh(build["code"], cwd=package, env=guide_env, timeout=600)
    assert result.returncode == 0, output(result)
    built = sorted(p.name for p in (package / "dist").iterdir())
    assert built == ["eventrouter_acme-0.1.0-py3-none-any.whl", "eventrouter_acme-0.1.0.tar.gz"]
