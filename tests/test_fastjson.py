"""orjson on the ingest path gives exactly the standard library's answers (eventrouter.fastjson)."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventrouter import fastjson
from eventrouter.errors import PayloadError
from eventrouter.events import Campaign, EventData
from eventrouter.payload import json_object

from .test_events import full_event

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _strict(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@given(JSON)
def test_reads_what_json_reads(value):
    text = json.dumps(value, ensure_ascii=False)
    for document in (text, text.encode()):
        got = fastjson.loads(document, json.loads)
        assert got == json.loads(text)
        assert _types(got) == _types(json.loads(text))  # 2**64 stays an int, 1.0 a float


@given(JSON)
def test_writes_what_json_reads_back(value):
    assert json.loads(fastjson.dumps(value, _strict)) == value


def _types(value):
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)


@pytest.mark.parametrize(
    "number",
    [
        "9223372036854775807",
        "-9223372036854775808",
        "-9223372036854775809",  # 19 digits, below 64 bits: orjson would give a float
        "18446744073709551616",
        "123456789012345678901234567890",
    ],
)
def test_integers_beyond_64_bits_keep_every_digit(number):
    assert json_object(f'{{"id": {number}}}'.encode()) == {"id": int(number)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": -Infinity}', "-Infinity is not valid JSON"),
        (b"\xef\xbb\xbf{}", "body is not valid JSON"),  # a byte order mark
        (b'{"a": "\xff"}', "not valid UTF-8 (byte 7)"),
        (b'{"a": 1', "body is not valid JSON: Expecting ',' delimiter"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_refusals_are_explained_as_before(body, message):
    with pytest.raises(PayloadError, match=re.escape(message)):
        json_object(body)


def test_what_orjson_refuses_but_json_reads_is_still_read():
    # a lone surrogate escape parses (to_json refuses to store it later, as before)
    assert json_object(b'{"a": "\\ud800"}') == {"a": "\ud800"}
    # an overflowing number becomes infinity, which to_json refuses to store
    assert math.isinf(json_object(b'{"a": 1e400}')["a"])


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70},
        {"small": -(2**63) - 1},
        {1: "a non-string key"},
    ],
)
def test_what_orjson_cannot_write_is_written_by_the_fallback(value):
    assert fastjson.dumps(value, _strict) == _strict(value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["raw", "attributes", "stats"])
def test_events_never_store_nan_or_infinity_as_null(bad, where):
    event = full_event()
    if where == "raw":
        event = event.evolve(raw={"list": [1, {"x": bad}]})
    elif where == "attributes":
        event = event.evolve(data=EventData(attributes={"x": (bad,)}))
    else:
        event = event.evolve(data=EventData(campaign=Campaign(stats={"rate": bad})))
    with pytest.raises(PayloadError, match="cannot represent"):
        event.to_json()


#: text where runs of digits of every length around 19 are likely, among non-ASCII digits
#: (which are not JSON's), multi-byte characters and lone surrogates
DIGIT_RUNS = st.lists(
    st.sampled_from(["0", "9", "5", "-", " ", "é", "٣", "\ud800", "e", '"'])
    | st.text(alphabet="0123456789", min_size=15, max_size=22),
    max_size=12,
).map("".join)


@given(DIGIT_RUNS)
def test_long_numbers_are_found_where_the_regex_finds_them(text):
    expected = re.search(r"[0-9]{19}", text) is not None
    assert fastjson._has_long_number(text) is expected
    encoded = text.encode("utf-8", "surrogatepass")
    assert fastjson._has_long_number(encoded) is expected


@pytest.mark.parametrize("document", ['{"id": -9223372036854775809}', '{"id": 2e5, "n": 1}'])
def test_text_documents_read_as_json_reads_them(document):
    # the stores hand events back as str: the same answers as for bytes
    got = fastjson.loads(document, json.loads)
    assert got == json.loads(document)
    assert _types(got) == _types(json.loads(document))
