"""The converter refuses what Python would silently coerce in a config file."""

from __future__ import annotations

import cattrs
import pytest
from attrs import frozen

from eventrouter.converter import Duration, converter


@frozen
class Options:
    insecure: bool = False
    secrets: tuple[str, ...] = ()
    delays: tuple[Duration, ...] = ()
    port: int = 0
    ratio: float = 0.0
    name: str = ""


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"insecure": "false"}, "$.insecure"),
        ({"insecure": 1}, "$.insecure"),
        ({"secrets": "abc"}, "$.secrets"),
        ({"secrets": ["ok", 3]}, "$.secrets[1]"),
        ({"delays": "5s"}, "$.delays"),
        ({"port": "8080"}, "$.port"),
        ({"port": True}, "$.port"),
        ({"port": 1.5}, "$.port"),
        ({"name": 5}, "$.name"),
        ({"ratio": "0.5"}, "$.ratio"),
    ],
)
def test_coercions_are_refused(value, where):
    with pytest.raises(cattrs.ClassValidationError) as info:
        converter.structure(value, Options)
    assert any(line.endswith(f"@ {where}") for line in cattrs.transform_error(info.value)), (
        cattrs.transform_error(info.value)
    )


def test_valid_values_pass():
    options = converter.structure(
        {
            "insecure": True,
            "secrets": ["a", "b"],
            "delays": ["5s", 10, "1m"],
            "port": 80,
            "ratio": 1,
            "name": "x",
        },
        Options,
    )
    assert options == Options(True, ("a", "b"), (5, 10, 60), 80, 1.0, "x")
    assert isinstance(options.ratio, float)
