"""Plugin discovery: built-ins through the same hooks, duplicates refused, listing, restriction."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from eventrouter import Sink, hookimpl
from eventrouter.cli import cli
from eventrouter.config import parse_config
from eventrouter.errors import ConfigError
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


def test_a_wrapper_on_event_normalised_is_refused():
    class Wrapping:
        @hookimpl(wrapper=True)
        def event_normalised(self, event):
            return (yield)

    pm = create_plugin_manager(load_entrypoints=False, plugins=[Wrapping()])
    with pytest.raises(ConfigError) as caught:
        Registry.collect(pm)
    [problem] = caught.value.problems
    assert "event_normalised cannot be a wrapper" in problem


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
