"""``[console]``: defaults, credentials, the refusal to listen beyond loopback without them,
password hashes, and the ``eventrouter console`` commands (alone and inside ``serve``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.config import parse_config
from eventrouter.console import hash_password, verify_password
from eventrouter.errors import ConfigError
from eventrouter.testing import installed_types
from tests.console_harness import WHSEC
from tests.processes import EventRouterProcess, write_demo_config
from tests.redis_server import free_port

HASH = hash_password("s3cret-password")
PUBLIC = "0.0.0.0"  # noqa: S104 - only ever parsed, never bound


def config(console: object | None, environ: dict[str, str] | None = None):
    document: dict[str, object] = {
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
    }
    if console is not None:
        document["console"] = console
    return parse_config(document, installed_types(), environ=environ or {})


def problems(console: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(console, environ)
    return caught.value.problems


def test_no_table_no_console_and_a_table_turns_it_on_at_loopback_8081():
    assert not config(None).console.enabled
    console = config({}).console
    assert (console.enabled, console.host, console.port, console.open_access) == (
        True,
        "127.0.0.1",
        8081,
        True,
    )
    assert not config({"enabled": False}).console.enabled


def test_beyond_loopback_without_credentials_is_refused_naming_the_key():
    [problem] = problems({"host": PUBLIC})
    assert problem.startswith("console.host: '0.0.0.0' is reachable from other machines")
    assert "eventrouter console hash-password" in problem
    assert config({"host": PUBLIC, "users": {"ann": {"password_hash": HASH}}}).console.users
    assert config({"host": PUBLIC, "enabled": False}).console.host == PUBLIC


def test_users_need_a_hash_and_a_known_role():
    found = problems({"users": {"ann": {"password_hash": "plain", "role": "admin"}}})
    assert any(p.startswith("console.users.ann.role: must be in") for p in found), found
    found = problems({"users": {"ann": {"password_hash": "plain"}}})
    assert found == [
        "console.users.ann.password_hash: not a password hash (make one with "
        "`eventrouter console hash-password` and paste what it prints)"
    ]


def test_tokens_are_secrets_never_quoted_and_never_empty():
    token = "tok-very-secret-123456"
    console = config({"tokens": ["${TOKEN}"]}, {"TOKEN": token}).console
    assert console.tokens == (token,)
    assert token not in repr(console)
    assert token in config({"tokens": ["${TOKEN}"]}, {"TOKEN": token}).secrets
    found = problems({"tokens": ["${TOKEN:-}"]})
    assert found
    assert all(token not in p for p in found)
    assert found[0].startswith("console.tokens")


def test_password_hashes_verify_and_malformed_ones_do_not():
    assert HASH.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret-password", HASH)
    assert not verify_password("s3cret-passwore", HASH)
    assert hash_password("s3cret-password") != HASH, "salted"
    for broken in ("", "scrypt$", "bcrypt$1$2$3$4$5", HASH[:-8] + "!!!!!!!!"):
        assert not verify_password("s3cret-password", broken)


def test_hash_password_command_prints_a_hash():
    result = CliRunner().invoke(cli, ["console", "hash-password"], input="pa55-word\npa55-word\n")
    assert result.exit_code == 0, result.output
    printed = result.output.strip().splitlines()[-1]
    assert verify_password("pa55-word", printed)


def test_console_command_refuses_a_public_host_without_credentials(tmp_path):
    path = write_demo_config(tmp_path, '[console]\nhost = "0.0.0.0"\n')
    result = CliRunner().invoke(cli, ["console", "--config", str(path)])
    assert result.exit_code == 1
    assert "console.host: '0.0.0.0' is reachable from other machines" in result.output
    assert "Traceback" not in result.output


def _get(url: str, token: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_serve_starts_the_console_on_its_own_port_only(tmp_path):
    port = free_port()
    path = write_demo_config(
        tmp_path, f'[console]\nport = {port}\ntokens = ["${{CONSOLE_TOKEN}}"]\n'
    )
    server = EventRouterProcess(path, env={"CONSOLE_TOKEN": "script-token-123456"}).start()
    try:
        base = f"http://127.0.0.1:{port}"
        status, body = _get(f"{base}/api/sources", "script-token-123456")
        assert status == 200
        assert body["sources"][0]["url"] == "http://127.0.0.1:8080/hooks/demo"
        assert _get(f"{base}/api/sources")[0] == 401
        assert _get(f"{server.url}/api/sources", "script-token-123456")[0] == 404
        assert f"console at http://127.0.0.1:{port}" in server.logs()
        assert "script-token-123456" not in server.logs()
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_names_the_console_port_when_it_is_taken(tmp_path):
    blocker = EventRouterProcess(write_demo_config(tmp_path)).start()
    try:
        path = write_demo_config(tmp_path, f"[console]\nport = {blocker.port}\n")
        result = CliRunner().invoke(cli, ["serve", "--config", str(path), "--port", "0"])
        assert result.exit_code == 1
        assert f"console: cannot listen on 127.0.0.1:{blocker.port}" in result.output
        assert "(change [console] port)" in result.output
    finally:
        blocker.stop()
