from eventrouter.testing import installed_types
from eventrouter_csv import CSVSink


def test_plugin_is_installed_and_discovered():
    registry = installed_types()
    assert "csv" in registry.sinks
    assert registry.sinks["csv"].cls is CSVSink
