from eventrouter.testing import installed_plugins, installed_types
from eventrouter_altur import AlturSource


def test_plugin_is_installed_and_discovered():
    registry = installed_types()
    assert "altur" in registry.sources
    assert registry.sources["altur"].cls is AlturSource
    infos = {info.name: info for info in installed_plugins()}
    assert infos["altur"].distribution == "eventrouter-altur"
    assert infos["altur"].sources == ("altur",)
