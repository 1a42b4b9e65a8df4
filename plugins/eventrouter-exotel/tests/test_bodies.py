"""Bodies: JSON or form by Content-Type, list values in every spelling, malformed bodies."""

from __future__ import annotations

import json

import pytest

from eventrouter import PayloadError, WebhookRequest
from eventrouter_exotel.body import MAX_FORM_FIELDS, decode_body, decode_form, string_list

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", "b", "c"], ("a", "b", "c")),
        ('["a", "b", "c"]', ("a", "b", "c")),
        ("a,b,c", ("a", "b", "c")),
        (" a , b ,, c ,", ("a", "b", "c")),
        ("a", ("a",)),
        (["a,b", "c"], ("a", "b", "c")),
        (['["a","b"]'], ("a", "b")),
        ([12, "b"], ("12", "b")),
        (12, ("12",)),
        ([], ()),
        ("", ()),
        (None, ()),
        ("[]", ()),
    ],
)
def test_string_list_spellings(value, expected):
    assert string_list(value, field="call_sids") == expected


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, True, 1.5, [["a"]], [{"a": 1}], "[not json", '["a", ["b"]]', "[1, true]"],
)
def test_string_list_refuses_other_shapes(value):
    with pytest.raises(PayloadError) as caught:
        string_list(value, field="call_sids")
    assert caught.value.field == "call_sids"


def test_form_repeated_and_bracketed_keys():
    body = b"call_sids=a&call_sids=b&x[]=1&y[0]=2&y[1]=3&to=%2B91&plain=1"
    assert decode_form(body) == {
        "call_sids": ["a", "b"],
        "x": ["1"],
        "y": ["2", "3"],
        "to": "+91",
        "plain": "1",
    }


def test_form_blank_values_and_plus_as_space():
    assert decode_form(b"a=&b=x+y&c=%20z&") == {"a": "", "b": "x y", "c": " z"}


def test_form_nested_brackets_stay_as_keys():
    assert decode_form(b"Legs[0][Status]=completed") == {"Legs[0][Status]": "completed"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"hello", "name=value"),
        (b"a=1&junk", "name=value"),
        (b"&&&", "no fields"),
        (b"a=\xff\xfe", "UTF-8"),
        (("a=1&" * (MAX_FORM_FIELDS + 1)).encode(), "more than"),
    ],
)
def test_malformed_forms(body, message):
    with pytest.raises(PayloadError, match=message):
        decode_form(body)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/cloudevents+json",
        "",
        "text/plain",
        "application/octet-stream",
    ],
)
def test_json_by_content_type_or_sniffing(content_type):
    assert decode_body(b' {"call_sid": "c1"}', content_type) == {"call_sid": "c1"}


@pytest.mark.parametrize("content_type", [FORM, "", "text/plain"])
def test_form_by_content_type_or_sniffing(content_type):
    assert decode_body(b"call_sid=c1", content_type) == {"call_sid": "c1"}


def test_json_content_type_is_not_read_as_form():
    with pytest.raises(PayloadError, match="not valid JSON"):
        decode_body(b"call_sid=c1", "application/json")


def test_form_content_type_is_not_read_as_json():
    with pytest.raises(PayloadError, match="name=value"):
        decode_body(b'{"call_sid": "c1"}', FORM)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "application/json", "empty"),
        (b"  \n", FORM, "empty"),
        (b"[1, 2]", "application/json", "expected a JSON object"),
        (b'"text"', "application/json", "expected a JSON object"),
        (b"{", "application/json", "not valid JSON"),
        (b"\xff{}", "application/json", "UTF-8"),
        (b"[" * 100_000, "application/json", "JSON"),
        (b"<xml/>", "application/xml", "unsupported Content-Type"),
        (b"--x\r\n", "multipart/form-data", "unsupported Content-Type"),
    ],
)
def test_malformed_bodies(body, content_type, message):
    with pytest.raises(PayloadError, match=message):
        decode_body(body, content_type)


def test_content_type_parameters_and_case_are_ignored(make_source):
    body = json.dumps({"campaign_sid": "c", "status": "Completed", "report_url": "u"}).encode()
    request = WebhookRequest(body=body, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert make_source().parse(request).type == "campaign.completed"
    request = WebhookRequest(
        body=b"campaign_sid=c&status=Completed&report_url=u",
        headers={"Content-Type": f"{FORM}; charset=UTF-8"},
    )
    assert make_source().parse(request).type == "campaign.completed"


def test_malformed_body_through_the_source_is_a_payload_error(make_source):
    with pytest.raises(PayloadError) as caught:
        make_source().parse(
            WebhookRequest(body=b"{not json", headers={"Content-Type": "application/json"})
        )
    assert "JSON" in caught.value.message
