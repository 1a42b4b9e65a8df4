from eventrouter.plugins import Registry, create_plugin_manager, plugin_infos
from eventrouter_altur import AlturSource


def test_plugin_is_installed_and_discovered():
    pm = create_plugin_manager()
    registry = Registry.collect(pm)
    assert "altur" in registry.sources
    assert registry.sources["altur"].cls is AlturSource
    infos = {info.name: info for info in plugin_infos(pm, registry)}
    assert infos["altur"].distribution == "eventrouter-altur"
    assert infos["altur"].sources == ("altur",)
