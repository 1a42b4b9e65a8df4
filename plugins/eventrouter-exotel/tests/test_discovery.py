"""The plugin is installed and found through the ``eventrouter`` entry-point group."""

from __future__ import annotations

from eventrouter.testing import installed_types
from eventrouter_exotel import ExotelSource


def test_plugin_is_installed_and_discovered():
    registry = installed_types()
    assert "exotel" in registry.sources
    assert registry.sources["exotel"].cls is ExotelSource


def test_source_type_names():
    assert ExotelSource.type_name == "exotel"
    assert ExotelSource.provider == "exotel"
    assert ExotelSource.secret_options == ("tokens", "basic_auth")
