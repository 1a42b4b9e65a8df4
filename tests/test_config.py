"""Configuration: every problem reported at once, with its path, and a fix where one is known."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.config import default_secrets_warning, parse_config
from eventrouter.errors import ConfigError
from eventrouter.plugins import Registry, create_plugin_manager

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.collect(create_plugin_manager(load_entrypoints=False))


def problems(document, registry, environ=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(document, registry, environ=environ or {})
    return info.value.problems


def test_valid_config_is_structured(registry):
    config = parse_config(
        {
            "server": {"port": 9000, "shutdown_timeout": "1m"},
            "store": {"dedupe_window": "2d"},
            "sources": {"demo": {"plugin": "standard-webhooks", "secrets": ["${SECRET}"]}},
            "sinks": {
                "fwd": {
                    "plugin": "http",
                    "url": "https://example.com/hook",
                    "delivery": {
                        "concurrency": 2,
                        "retry_schedule": ["1s", "2m"],
                        "timeout": "10s",
                    },
                }
            },
            "routes": [
                {
                    "sources": ["de*"],
                    "types": ["invoice.*"],
                    "filter": "data.attributes.n > `1`",
                    "sinks": ["fwd"],
                }
            ],
        },
        registry,
        environ={"SECRET": WHSEC},
    )
    assert config.server.port == 9000
    assert config.server.shutdown_timeout == 60
    assert config.store.dedupe_window == 2 * 86400
    assert config.source_paths == {"demo": "/hooks/demo"}
    assert config.sources["demo"].options.secrets == [WHSEC]
    assert WHSEC in config.secrets
    delivery = config.sinks["fwd"].delivery
    assert (
        delivery.concurrency,
        delivery.retry_schedule,
        delivery.timeout,
        delivery.max_attempts,
    ) == (2, (1, 120), 10, 3)
    assert config.sinks_for("demo", "invoice.paid", {"data": {"attributes": {"n": 2}}}) == ["fwd"]
    assert config.sinks_for("demo", "invoice.paid", {"data": {"attributes": {"n": 1}}}) == []
    assert config.sinks_for("demo", "user.created", {"data": {"attributes": {"n": 2}}}) == []


def test_defaults(registry):
    config = parse_config({}, registry)
    assert config.server.host == "127.0.0.1"
    assert config.store.backend == "sqlite"
    assert config.store.dedupe_window == 3 * 86400
    assert config.routes == []


def test_every_problem_reported_at_once_with_its_path(registry):
    found = problems(
        {
            "server": {"port": "eighty", "colour": "blue"},
            "sources": {"demo": {"plugin": "standard-webhooks"}},
            "sinks": {
                "alerts": {"plugin": "http"},
                "slow": {"plugin": "http", "url": "https://x.test", "delivery": {"concurrency": 0}},
            },
            "routes": [{"sinks": ["nowhere"], "filter": "data.[", "sources": ["nomatch"]}],
            "extra": {},
        },
        registry,
    )
    text = "\n".join(found)
    assert "server.port: expected int, got str 'eighty'" in text
    assert "server: unknown key 'colour'" in text
    assert "sources.demo.secrets: required" in text
    assert "sinks.alerts.url: required" in text
    assert "sinks.slow.delivery.concurrency: must be > 0: 0" in text
    assert "routes[0].sinks: no sink named 'nowhere'" in text
    assert "routes[0].filter: invalid JMESPath expression" in text
    assert "routes[0].sources: 'nomatch' matches no configured source" in text
    assert "extra: unknown section" in text
    assert len(found) == 9, found


def test_several_problems_in_one_table_are_all_reported(registry):
    found = problems(
        {
            "server": {"port": -1, "max_body_bytes": 0, "max_connections": 0},
            "store": {"backend": "mysql", "max_pending_writes": 0},
            "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [], "path": 5}},
            "sinks": {
                # a wrong delivery table does not hide the plugin's own problems
                "slow": {
                    "plugin": "http",
                    "url": "ftp://x",
                    "delivery": {"concurrency": 0, "jitter": 5, "batch_size": 20000},
                },
                # nor does an unknown key
                "typo": {"plugin": "http", "url": "gopher://y", "bogus": 1},
            },
        },
        registry,
    )
    assert sorted(found) == sorted(
        [
            "server.port: must be >= 0: -1",
            "server.max_body_bytes: must be > 0: 0",
            "server.max_connections: must be > 0: 0",
            "store.backend: must be in ('sqlite', 'redis') (got 'mysql')",
            "store.max_pending_writes: must be > 0: 0",
            "sources.demo.path: expected str, got int 5",
            "sources.demo.secrets: at least one secret is required",
            "sinks.slow.delivery.concurrency: must be > 0: 0",
            "sinks.slow.delivery.jitter: must be <= 1: 5.0",
            "sinks.slow.delivery.batch_size: must be <= 10000: 20000",
            "sinks.slow.url: expected an http:// or https:// URL, got 'ftp://x'",
            "sinks.typo: unknown key 'bogus' (expected one of: headers, url)",
            "sinks.typo.url: expected an http:// or https:// URL, got 'gopher://y'",
        ]
    ), found


def test_missing_environment_variable_is_named_once(registry):
    found = problems(
        {"sources": {"demo": {"plugin": "standard-webhooks", "secrets": ["${DEMO_SECRET}"]}}},
        registry,
    )
    assert found == [
        "sources.demo.secrets[0]: environment variable DEMO_SECRET is not set (export DEMO_SECRET=... or remove ${DEMO_SECRET})"
    ]


def test_environment_default_and_escape(registry):
    config = parse_config(
        {
            "sinks": {
                "fwd": {
                    "plugin": "http",
                    "url": "${URL:-https://fallback.test/a}",
                    "headers": {"X": "$${literal}"},
                }
            }
        },
        registry,
        environ={},
    )
    assert config.sinks["fwd"].sink.options.url == "https://fallback.test/a"
    assert config.sinks["fwd"].sink.options.headers == {"X": "${literal}"}


def test_unknown_plugin_names_the_package_to_install(registry):
    found = problems({"sinks": {"chat": {"plugin": "teams"}}}, registry)
    assert len(found) == 1
    assert "sinks.chat.plugin: no installed plugin provides sink type 'teams'" in found[0]
    assert "pip install eventrouter-teams" in found[0]


def test_plugin_check_problems_are_reported(registry):
    found = problems({"sinks": {"fwd": {"plugin": "http", "url": "ftp://x"}}}, registry)
    assert found == ["sinks.fwd.url: expected an http:// or https:// URL, got 'ftp://x'"]
    found = problems(
        {"sources": {"demo": {"plugin": "standard-webhooks", "secrets": ["not base64 !"]}}},
        registry,
    )
    assert found == ["sources.demo.secrets: each secret must be 'whsec_' followed by base64"]


def test_duplicate_paths_and_bad_durations(registry):
    found = problems(
        {
            "sources": {
                "a": {"plugin": "standard-webhooks", "secrets": [WHSEC], "path": "/in"},
                "b": {"plugin": "standard-webhooks", "secrets": [WHSEC], "path": "/in"},
            },
            "server": {"shutdown_timeout": "soon"},
        },
        registry,
    )
    assert "sources.b.path: /in is already the path of sources.a" in found
    assert any(p.startswith("server.shutdown_timeout: expected a duration") for p in found), found


def test_redis_backend_needs_a_url(registry):
    assert problems({"store": {"backend": "redis"}}, registry) == [
        "store.url: required when backend = 'redis' (e.g. url = 'redis://localhost:6379/0')"
    ]


def test_check_command(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(f'[sources.demo]\nplugin = "standard-webhooks"\nsecrets = ["{WHSEC}"]\n')
    result = CliRunner().invoke(cli, ["check", "--config", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK — 1 source, 0 sinks, 0 routes, sqlite store" in result.output

    bad = tmp_path / "bad.toml"
    bad.write_text('[sinks.alerts]\nplugin = "http"\n[sources.x]\nplugin = "nope"\n')
    result = CliRunner().invoke(cli, ["check", "--config", str(bad)])
    assert result.exit_code == 1
    assert "sinks.alerts.url: required" in result.output
    assert "pip install eventrouter-nope" in result.output
    assert "Traceback" not in result.output

    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = 1")
    result = CliRunner().invoke(cli, ["check", "--config", str(broken)])
    assert result.exit_code == 1
    assert "invalid TOML" in result.output

    result = CliRunner().invoke(cli, ["check", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_every_string_field_of_a_log_record_is_masked():
    import logging

    from eventrouter.redact import RedactingFilter, Redactor

    record = logging.LogRecord(
        "aiohttp.access", logging.INFO, "x", 1, "%s", ("GET /?token=tok-123456",), None
    )
    record.first_request_line = "POST /hooks/exotel?token=tok-123456 HTTP/1.1"
    record.er_detail = "tok-123456"
    RedactingFilter(Redactor(["tok-123456"])).filter(record)
    assert record.getMessage() == "GET /?token=***"
    assert record.first_request_line == "POST /hooks/exotel?token=*** HTTP/1.1"
    assert record.er_detail == "***"


def test_problems_never_quote_a_secret(registry):
    """A secret in the wrong shape is reported by its key and type, its value masked."""
    found = problems(
        {
            "sources": {
                "env": {"plugin": "standard-webhooks", "secrets": "${WH_SECRET}"},
                "literal": {"plugin": "standard-webhooks", "secrets": "TopSecretLiteral42"},
                "bad": {"plugin": "standard-webhooks", "secrets": ["not-a-whsec-value-123"]},
            },
            "sinks": {
                "fwd": {
                    "plugin": "http",
                    "url": "https://example.com/hook",
                    "headers": "Bearer sk-live-0123456789",
                }
            },
        },
        registry,
        environ={"WH_SECRET": "TopSecretFromEnv99"},
    )
    text = "\n".join(found)
    assert "sources.env.secrets: expected a list, got str '***'" in found
    assert "sources.literal.secrets: expected a list, got str '***'" in found
    assert any(p.startswith("sources.bad.secrets:") for p in found)
    assert any(p.startswith("sinks.fwd.headers:") for p in found)
    for secret in ("TopSecretFromEnv99", "TopSecretLiteral42", "sk-live-0123456789"):
        assert secret not in text


def test_a_misspelt_name_gets_a_did_you_mean(registry):
    found = problems(
        {
            "sourcs": {},
            "server": {"max_body_byte": 10},
            "sinks": {
                "archive": {
                    "plugin": "htp",
                    "url": "https://example.com/hook",
                },
                "fwd": {
                    "plugin": "http",
                    "url": "https://example.com/hook",
                    "delivery": {"concurency": 2},
                },
            },
            "routes": [{"sinks": ["archiv", "fwd"]}],
        },
        registry,
    )
    assert "sourcs: unknown section (did you mean 'sources'?)" in found
    assert "server: unknown key 'max_body_byte' (did you mean 'max_body_bytes'?)" in found
    assert "sinks.fwd.delivery: unknown key 'concurency' (did you mean 'concurrency'?)" in found
    assert "routes[0].sinks: no sink named 'archiv' (did you mean 'archive'?)" in found
    assert any(
        p.startswith(
            "sinks.archive.plugin: no installed plugin provides sink type 'htp' "
            "(did you mean 'http'?"
        )
        for p in found
    ), found


def test_a_typo_in_a_core_section_does_not_send_the_user_to_a_plugin(registry):
    found = problems({"store": {"pth": "x.db", "zzz": 1}, "qqq": {}}, registry)
    assert found == [
        "qqq: unknown section (expected one of: console, routes, server, sinks, sources, store)",
        "store: unknown key 'pth' (did you mean 'path'?)",
        "store: unknown key 'zzz' (expected one of: backend, dedupe_window, key_prefix, "
        "max_pending_writes, operation_timeout, path, retention, sentinels, service_name, url)",
    ]
    assert not any("README" in p for p in found)


def test_a_wrong_type_shows_the_value_it_got(registry):
    found = problems({"server": {"port": "80a", "max_connections": [1]}}, registry)
    assert found == [
        "server.port: expected int, got str '80a'",
        "server.max_connections: expected int, got list [1]",
    ]


def test_one_unset_variable_is_one_problem_per_entry():
    """A plugin whose check() also complains about the empty value it left says nothing more."""
    full = Registry.collect(create_plugin_manager())
    found = problems(
        {
            "sources": {
                "altur": {"plugin": "altur", "secrets": ["${ALTUR_SECRET_UNSET}"]},
                "pelcro": {"plugin": "pelcro", "secrets": "${PELCRO_SECRET_UNSET}"},
            }
        },
        full,
    )
    assert [p.split(": ", 1)[0] for p in found] == [
        "sources.altur.secrets[0]",
        "sources.pelcro.secrets",
    ], found
    assert all("is not set" in p for p in found)


def test_secrets_left_to_the_default_written_in_the_file_are_named(registry):
    document = {
        "sources": {
            "demo": {"plugin": "standard-webhooks", "secrets": [f"${{DEMO_SECRET:-{WHSEC}}}"]},
            "set": {"plugin": "standard-webhooks", "secrets": [f"${{NEW_SECRET:-{WHSEC}}}"]},
        },
        "sinks": {
            "fwd": {
                # a default for an option that is not a secret is nothing to warn of
                "url": "${FWD_URL:-https://example.com/hook}",
                "plugin": "http",
                "headers": {"Authorization": "${FWD_AUTH:-Bearer development-only}"},
            },
        },
    }
    config = parse_config(document, registry, environ={"NEW_SECRET": WHSEC})
    assert config.default_secrets == (
        ("sources.demo", "DEMO_SECRET"),
        ("sinks.fwd", "FWD_AUTH"),
    )
    warning = default_secrets_warning(config, "eventrouter.toml")
    assert warning is not None
    assert warning.startswith(
        "sources.demo, sinks.fwd: using the public secret written in eventrouter.toml "
        "(DEMO_SECRET, FWD_AUTH not set)"
    )
    assert WHSEC not in warning
    assert "development-only" not in warning
    environ = {"NEW_SECRET": WHSEC, "DEMO_SECRET": WHSEC, "FWD_AUTH": "Bearer 0123456789"}
    config = parse_config(document, registry, environ=environ)
    assert (config.default_secrets, default_secrets_warning(config, "x.toml")) == ((), None)


def test_the_event_loop_is_one_of_three_and_uvloop_only_where_it_is_installed(
    registry, monkeypatch
):
    assert parse_config({}, registry).server.event_loop == "auto"
    for name in ("auto", "asyncio"):
        assert parse_config({"server": {"event_loop": name}}, registry).server.event_loop == name
    assert problems({"server": {"event_loop": "libuv"}}, registry) == [
        "server.event_loop: expected one of 'auto', 'uvloop', 'asyncio', got 'libuv'"
    ]
    monkeypatch.setattr("eventrouter.config.uvloop_installed", lambda: False)
    assert problems({"server": {"event_loop": "uvloop"}}, registry) == [
        'server.event_loop: uvloop is not installed here (pip install uvloop), or set event_loop = "auto"'
    ]
    # "auto" falls back to asyncio's own loop there
    assert parse_config({"server": {"event_loop": "auto"}}, registry).server.event_loop == "auto"
