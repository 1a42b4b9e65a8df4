"""Plugin discovery: built-ins through the same hooks, duplicates refused, listing, restriction."""

from __future__ import annotations

import json
import logging
import re

import pytest
from attrs import define
from click.testing import CliRunner

from eventrouter import Sink, WebhookRequest, hookimpl
from eventrouter.cli import cli
from eventrouter.config import parse_config
from eventrouter.errors import ConfigError
from eventrouter.events import Event, utcnow
from eventrouter.hooks import implementations, notify_observers, summary, transform_event
from eventrouter.plugins import DEFAULT_PLUGINS, Registry, create_plugin_manager, plugin_infos


def test_builtins_register_through_the_hooks():
    registry = Registry.collect(create_plugin_manager(load_entrypoints=False))
    assert registry.sources["standard-webhooks"].plugin == "eventrouter.builtin.standard_webhooks"
    assert registry.sinks["http"].plugin == "eventrouter.builtin.http_forward"


def test_a_type_registered_twice_is_refused_naming_both_plugins():
    class Copy(Sink):
        type_name = "http"

        async def deliver(self, event):
            pass

    class Plugin:
        @hookimpl
        def register_sinks(self, register):
            register(Copy)

    pm = create_plugin_manager(load_entrypoints=False, plugins=[Plugin()])
    with pytest.raises(
        ConfigError,
        match=r"sink type 'http' is registered twice: by plugin 'eventrouter\.builtin\.http_forward'",
    ):
        Registry.collect(pm)


def test_a_misspelt_hook_is_an_error():
    class Typo:
        @hookimpl
        def register_sink(self, register):
            pass

    with pytest.raises(Exception, match="unknown hook 'register_sink'"):
        create_plugin_manager(load_entrypoints=False, plugins=[Typo()])


def test_registering_a_non_sink_is_refused():
    class Plugin:
        @hookimpl
        def register_sinks(self, register):
            register(dict)

    with pytest.raises(TypeError, match="not a Sink subclass"):
        Registry.collect(create_plugin_manager(load_entrypoints=False, plugins=[Plugin()]))


def test_plugin_infos_show_distribution_version_types_and_hooks():
    infos = {
        info.name: info for info in plugin_infos(create_plugin_manager(load_entrypoints=False))
    }
    assert set(DEFAULT_PLUGINS) <= set(infos)
    info = infos["eventrouter.builtin.standard_webhooks"]
    assert (info.distribution, info.sources, info.sinks, info.hooks) == (
        "eventrouter",
        ("standard-webhooks",),
        (),
        ("register_sources",),
    )


def test_load_plugins_env_restricts_installed_plugins(monkeypatch):
    monkeypatch.setenv("EVENTROUTER_LOAD_PLUGINS", "")
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    names = [info["name"] for info in json.loads(result.output)]
    assert sorted(names) == sorted(DEFAULT_PLUGINS)


def _loaded(monkeypatch, value: str) -> set[str]:
    monkeypatch.setenv("EVENTROUTER_LOAD_PLUGINS", value)
    registry = Registry.collect(create_plugin_manager())
    return set(registry.sources) | set(registry.sinks)


def test_load_plugins_env_names_entry_points_or_distributions_in_any_spelling(monkeypatch):
    builtin = {"standard-webhooks", "http", "signed"}
    assert _loaded(monkeypatch, "csv") == builtin | {"csv"}
    assert _loaded(monkeypatch, "eventrouter-altur, pelcro") == builtin | {"altur", "pelcro"}
    # distribution names compare as PEP 503 says: case, '_' and '.' do not matter
    assert _loaded(monkeypatch, "Eventrouter_Exotel") == builtin | {"exotel"}


def test_load_plugins_env_warns_about_names_that_match_nothing(monkeypatch, caplog):
    assert _loaded(monkeypatch, "csv,eventrouter-slak") == {
        "standard-webhooks",
        "http",
        "signed",
        "csv",
    }
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "EVENTROUTER_LOAD_PLUGINS names eventrouter-slak, which no installed plugin" in (
        warning.getMessage()
    )
    assert "eventrouter-slack" in warning.getMessage()  # the installed names, to compare


def test_a_type_hidden_by_load_plugins_says_so(monkeypatch):
    monkeypatch.setenv("EVENTROUTER_LOAD_PLUGINS", "csv")
    registry = Registry.collect(create_plugin_manager())
    with pytest.raises(ConfigError) as caught:
        parse_config({"sinks": {"alerts": {"plugin": "slack"}}}, registry, environ={})
    [problem] = caught.value.problems
    assert problem.startswith("sinks.alerts.plugin: no installed plugin provides sink type 'slack'")
    assert "pip install eventrouter-slack, or add it to EVENTROUTER_LOAD_PLUGINS" in problem


class _WrapsNormalised:
    @hookimpl(wrapper=True)
    def event_normalised(self, event):
        return (yield)


class _WrapsFailed:
    @hookimpl(hookwrapper=True)
    def delivery_failed(self, event):
        yield


@pytest.mark.parametrize(
    ("plugin", "hook"),
    [(_WrapsNormalised(), "event_normalised"), (_WrapsFailed(), "delivery_failed")],
)
def test_a_wrapper_implementation_is_refused(plugin, hook):
    """The core calls each implementation on its own, where a wrapper would silently do nothing."""
    pm = create_plugin_manager(load_entrypoints=False, plugins=[plugin])
    with pytest.raises(ConfigError) as caught:
        Registry.collect(pm)
    [problem] = caught.value.problems
    assert f"{hook} cannot be a wrapper" in problem


def test_plugin_options_need_no_converter_of_their_own():
    # the core refuses what Python would coerce, so a plugin's Options need no hook to be safe
    # for authentication options: "false" is not False, and a string is not a list of keys
    from attrs import field, frozen

    from eventrouter.converter import converter

    @frozen
    class GuardedOptions:
        tokens: list[str] = field(factory=list)
        insecure: bool = False

    class Guarded(Sink):
        type_name = "guarded"
        Options = GuardedOptions

        async def deliver(self, event):
            pass

    class Plugin:
        @hookimpl
        def register_sinks(self, register):
            register(Guarded)

    registry = Registry.collect(create_plugin_manager(plugins=[Plugin()], load_entrypoints=False))
    for table, key in (({"insecure": "false"}, "insecure"), ({"tokens": "abcdef"}, "tokens")):
        document = {"sinks": {"g": {"plugin": "guarded", **table}}}
        with pytest.raises(ConfigError) as refused:
            parse_config(document, registry, environ={})
        assert [problem.split(":")[0] for problem in refused.value.problems] == [f"sinks.g.{key}"]
    assert converter.structure(
        {"tokens": ["abcdef"], "insecure": True}, GuardedOptions
    ) == GuardedOptions(["abcdef"], True)


# -- calling hooks (eventrouter.hooks) ------------------------------------------------------------


def _event(**changes) -> Event:
    now = utcnow()
    event = Event(
        id="evt_1",
        source="demo",
        type="order.paid",
        time=now,
        provider="p",
        provider_type="order.paid",
        idempotency_key="k1",
        received_at=now,
        raw={"card": "4242-secret-card"},
    )
    return event.evolve(**changes) if changes else event


class _Quiet(Sink):
    type_name = "quiet"

    async def deliver(self, event):
        pass


async def test_a_failing_observer_hook_is_only_logged(caplog):
    heard: list[int] = []

    class Raising:
        @hookimpl
        def delivery_succeeded(self, event, sink, attempt, duration):
            raise RuntimeError("observer bug")

    class RaisingLater:
        @hookimpl
        async def delivery_succeeded(self, event, sink, attempt, duration):
            raise RuntimeError("async observer bug")

    class Listening:
        @hookimpl
        async def delivery_succeeded(self, event, sink, attempt, duration):
            heard.append(attempt)

    sink = _Quiet("quiet", None)
    # the last registered runs first: an observer that failed before it must not silence it
    for plugins in ([Listening(), Raising()], [Listening(), RaisingLater()]):
        pm = create_plugin_manager(load_entrypoints=False, plugins=plugins)
        await notify_observers(
            pm, "delivery_succeeded", event=_event(), sink=sink, attempt=2, duration=0.1
        )

    assert heard == [2, 2]
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [str(r.exc_info[1]) for r in failures] == ["observer bug", "async observer bug"]
    assert "Raising: its delivery_succeeded hook failed" in failures[0].getMessage()
    assert "RaisingLater: its delivery_succeeded hook failed" in failures[1].getMessage()


async def test_event_normalised_runs_in_turn_each_seeing_the_previous_event():
    seen: list[tuple[str, str]] = []

    class Tagging:
        @hookimpl
        async def event_normalised(self, event, source):
            seen.append(("tagging", event.type))
            return event.evolve(type=f"{event.type}.tagged")

    class Dropping:
        @hookimpl
        def event_normalised(self, event, source):
            seen.append(("dropping", event.type))
            return False if event.subject == "drop me" else None

    pm = create_plugin_manager(load_entrypoints=False, plugins=[Dropping(), Tagging()])
    source = object()

    kept = await transform_event(pm, _event(), source)
    dropped = await transform_event(pm, _event(subject="drop me"), source)

    assert kept is not None
    assert kept.type == "order.paid.tagged"
    assert dropped is None
    # pluggy's order (the last registered first), the second given the first's event
    assert seen == [("tagging", "order.paid"), ("dropping", "order.paid.tagged")] * 2
    plain, event = create_plugin_manager(load_entrypoints=False), _event()
    assert await transform_event(plain, event, source) is event


def test_implementations_credits_each_plugin_with_its_own_answer():
    class One:
        @hookimpl
        def register_sinks(self, register):
            register(_Quiet)

    pm = create_plugin_manager(load_entrypoints=False, plugins=[One()])
    callers = implementations(pm, "register_sinks")

    assert [name for name, _ in callers][-1] == "eventrouter.builtin.http_forward"
    registered: dict[str, list[str]] = {}
    for name, hook in callers:
        hook(register=lambda type_, name=name: registered.setdefault(name, []).append(type_))
    assert [t.type_name for t in registered["eventrouter.builtin.http_forward"]] == ["http"]
    assert [t.type_name for ts in registered.values() for t in ts].count("quiet") == 1
    assert implementations(pm, "delivery_failed") == []


async def test_trace_plugins_logs_every_hook_call_without_secrets(monkeypatch, caplog):
    class Observer:
        @hookimpl
        async def delivery_failed(self, event, sink, attempt, error, retry_at):
            pass

    async def start_and_fail_a_delivery() -> None:
        pm = create_plugin_manager(load_entrypoints=False, plugins=[Observer()])
        Registry.collect(pm)
        await notify_observers(
            pm,
            "delivery_failed",
            event=_event(),
            sink=_Quiet("alerts", None),
            attempt=3,
            error="HTTP 401: token sk_live_secret refused",
            retry_at=None,
        )

    caplog.set_level(logging.INFO, logger="eventrouter.hooks")
    await start_and_fail_a_delivery()
    assert caplog.records == []  # off unless asked for

    monkeypatch.setenv("EVENTROUTER_TRACE_PLUGINS", "1")
    await start_and_fail_a_delivery()

    lines = [r.getMessage() for r in caplog.records]
    [registration] = [line for line in lines if line.startswith("hook register_sinks(")]
    assert "by eventrouter.builtin.http_forward: returned None in " in registration
    assert re.search(r" in \d+\.\d{3} ms$", registration)
    [failed] = [line for line in lines if line.startswith("hook delivery_failed(")]
    assert "event=Event(id='evt_1', source='demo', type='order.paid')" in failed
    assert "sink=_Quiet(name='alerts')" in failed
    assert "attempt=3" in failed
    assert "error=str[38]" in failed
    assert "returned awaitable " in failed
    assert any(re.match(r"awaited .*delivery_failed in \d+\.\d{3} ms$", line) for line in lines)
    text = "\n".join(lines)
    assert "sk_live" not in text
    assert "4242" not in text
    request = WebhookRequest(body=b'{"card": "4242"}', headers={"Authorization": "Bearer sk_live"})
    assert summary(request) == "WebhookRequest(POST /, 16 bytes)"


async def test_plugin_objects_that_cannot_be_hashed_are_called_like_any_other(caplog):
    """attrs classes with eq are unhashable; pluggy registers them, so the core calls them."""
    heard: list[str] = []

    @define
    class Unhashable:
        name: str

        @hookimpl
        def register_sinks(self, register):
            register(_Quiet)

        @hookimpl
        def delivery_failed(self, sink, error):
            heard.append(f"{self.name}: {error}")

    @define
    class Another:
        @hookimpl
        def delivery_failed(self, attempt):
            heard.append(f"attempt {attempt}")

    pm = create_plugin_manager(load_entrypoints=False, plugins=[Unhashable("u"), Another()])
    assert Registry.collect(pm).sinks["quiet"].plugin.endswith("Unhashable")
    await notify_observers(
        pm,
        "delivery_failed",
        event=_event(),
        sink=_Quiet("quiet", None),
        attempt=1,
        error="boom",
        retry_at=None,
    )
    assert heard == ["attempt 1", "u: boom"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
