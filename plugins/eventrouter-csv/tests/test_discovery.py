from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter_csv import CSVSink


def test_plugin_is_installed_and_discovered():
    registry = Registry.collect(create_plugin_manager())
    assert "csv" in registry.sinks
    assert registry.sinks["csv"].cls is CSVSink
