from datetime import UTC, datetime, timedelta, timezone

import pytest

from eventrouter import (
    AnsweredBy,
    CallDirection,
    CallStatus,
    PermanentError,
    RetryableError,
    TranscriptTurn,
)
from eventrouter_crm.backends.hubspot_shapes import (
    ASSOCIATION_TYPE_IDS,
    DEFAULT_DISPOSITIONS,
    EngagementInput,
    HubSpotRefused,
    HubSpotRetryable,
    Link,
    UpsertInput,
    association_results,
    call_properties,
    contact_input,
    create_body,
    create_results,
    disposition_for,
    encode,
    error_for_response,
    hs_timestamp,
    note_properties,
    oldest,
    search_bodies,
    search_matches,
    unknown_properties,
    update_results,
    upsert_results,
)
from eventrouter_crm.records import CallRecord, ContactRecord, NoteRecord

CONNECTED = "f240bbac-87c9-4f6e-bf70-924b57d47db7"
VOICEMAIL = "b2cf5968-551e-4856-9783-52b3da59a7d0"


def _call(**changes):
    values = {
        "external_id": "altur:cll_1",
        "timestamp": datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
        "title": "Outbound call via altur",
        "status": CallStatus.COMPLETED,
        "direction": CallDirection.OUTBOUND,
        "answered_by": AnsweredBy.HUMAN,
        "duration_seconds": 45,
        "recording_url": "https://api.altur.io/api/v1.0/call/cll_1/recording",
        "from_number": "+15550000001",
        "to_number": "+521234567890",
        "summary": ("Answered by: human",),
        "transcript": (
            TranscriptTurn("agent", "Hola <Sofía> & co"),
            TranscriptTurn("contact", "Sí"),
        ),
    }
    return CallRecord(**(values | changes))


def test_contact_by_email_keeps_phone_as_plain_property():
    contact = ContactRecord(
        email="ana@example.com",
        phone="+521234567890",
        first_name="Ana",
        last_name="Díaz",
        properties={"payment_amount": "1200", "email": "overridden@example.com"},
    )
    id_property, item = contact_input(contact, phone_id_property="eventrouter_phone")
    assert id_property == "email"
    assert item.id_value == "ana@example.com"
    assert item.properties == {
        "payment_amount": "1200",
        "email": "ana@example.com",
        "firstname": "Ana",
        "lastname": "Díaz",
        "phone": "+521234567890",
    }


def test_phone_only_contact_is_matched_on_the_unique_phone_property():
    contact = ContactRecord(phone="+521234567890")
    id_property, item = contact_input(contact, phone_id_property="er_phone")
    assert id_property == "er_phone"
    assert item == UpsertInput(
        "+521234567890", {"phone": "+521234567890", "er_phone": "+521234567890"}
    )
    with pytest.raises(ValueError, match="email or a phone"):
        contact_input(ContactRecord(first_name="x"), phone_id_property="er_phone")


def test_call_properties():
    properties = call_properties(
        _call(), event_id_property="eventrouter_event_id", dispositions=DEFAULT_DISPOSITIONS
    )
    assert properties == {
        "eventrouter_event_id": "altur:cll_1",
        "hs_timestamp": "2024-12-19T15:00:10.000Z",
        "hs_call_title": "Outbound call via altur",
        "hs_call_body": (
            "<p>Answered by: human</p>"
            "<p><strong>Agent:</strong> Hola &lt;Sofía&gt; &amp; co</p>"
            "<p><strong>Contact:</strong> Sí</p>"
        ),
        "hs_call_direction": "OUTBOUND",
        "hs_call_status": "COMPLETED",
        "hs_call_duration": "45000",
        "hs_call_recording_url": "https://api.altur.io/api/v1.0/call/cll_1/recording",
        "hs_call_from_number": "+15550000001",
        "hs_call_to_number": "+521234567890",
        "hs_call_disposition": CONNECTED,
    }


def test_call_properties_leave_out_what_is_unknown_or_refused():
    call = _call(
        status=CallStatus.UNKNOWN,
        direction=None,
        duration_seconds=None,
        recording_url="http://insecure.example/rec.mp3",
        from_number=None,
        to_number=None,
        summary=(),
        transcript=(),
    )
    properties = call_properties(call, event_id_property="ext", dispositions=DEFAULT_DISPOSITIONS)
    assert properties == {
        "ext": "altur:cll_1",
        "hs_timestamp": "2024-12-19T15:00:10.000Z",
        "hs_call_title": "Outbound call via altur",
    }


@pytest.mark.parametrize(
    ("status", "answered_by", "expected"),
    [
        (CallStatus.COMPLETED, AnsweredBy.HUMAN, CONNECTED),
        (CallStatus.COMPLETED, None, CONNECTED),
        (CallStatus.BUSY, None, "9d9162e7-6cf3-4944-bf63-4dff82258764"),
        (CallStatus.NO_ANSWER, None, "73a0d17f-1163-4015-bdd5-ec830791da20"),
        (CallStatus.COMPLETED, AnsweredBy.MACHINE, None),
        (CallStatus.FAILED, None, None),
    ],
)
def test_default_dispositions(status, answered_by, expected):
    assert (
        disposition_for(_call(status=status, answered_by=answered_by), DEFAULT_DISPOSITIONS)
        == expected
    )


def test_configured_disposition_for_machines():
    dispositions = {**DEFAULT_DISPOSITIONS, "machine": VOICEMAIL}
    call = _call(answered_by=AnsweredBy.MACHINE)
    assert disposition_for(call, dispositions) == VOICEMAIL


def test_note_properties():
    note = NoteRecord(
        external_id="pelcro:evt_1",
        timestamp=datetime(2026, 6, 8, 18, 0, tzinfo=timezone(timedelta(hours=-6))),
        title="Campaign triggered",
        lines=("Campaign: Spring <Promo> (542)", "Status: active"),
    )
    assert note_properties(note, event_id_property="eventrouter_event_id") == {
        "eventrouter_event_id": "pelcro:evt_1",
        "hs_timestamp": "2026-06-09T00:00:00.000Z",
        "hs_note_body": (
            "<p><strong>Campaign triggered</strong></p>"
            "<p>Campaign: Spring &lt;Promo&gt; (542)</p><p>Status: active</p>"
        ),
    }


def test_hs_timestamp_keeps_milliseconds():
    value = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert hs_timestamp(value) == "2024-01-02T03:04:05.678Z"


def test_upsert_results_are_matched_on_the_id_property_not_order():
    items = [UpsertInput("Ana@Example.com"), UpsertInput("bo@example.com")]
    payload = {
        "status": "COMPLETE",
        "results": [
            {"id": "2", "properties": {"email": "bo@example.com"}},
            {"id": "1", "properties": {"email": "ana@example.com"}},
        ],
    }
    assert upsert_results(items, payload, id_property="email", object_type="contacts") == ["1", "2"]


def test_upsert_results_with_errors_from_a_207():
    items = [
        UpsertInput("a@example.com"),
        UpsertInput("b@example.com"),
        UpsertInput("c@example.com"),
    ]
    payload = {
        "status": "COMPLETE",
        "results": [{"id": "1", "properties": {"email": "a@example.com"}}],
        "numErrors": 2,
        "errors": [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid",
                "context": {"ids": ["b@example.com"]},
            },
            {
                "status": "error",
                "category": "RATE_LIMITS",
                "message": "slow down",
                "context": {"ids": ["c@example.com"]},
            },
        ],
    }
    first, second, third = upsert_results(
        items, payload, id_property="email", object_type="contacts"
    )
    assert first == "1"
    assert isinstance(second, HubSpotRefused)
    assert (
        second.message
        == "HubSpot refused one record of the batch: VALIDATION_ERROR: Property values were not valid"
    )
    assert isinstance(third, RetryableError)
    assert third.retry_after == 10.0


def test_upsert_result_missing_is_retryable():
    items = [UpsertInput("a@example.com"), UpsertInput("b@example.com")]
    payload = {"results": [{"id": "1", "properties": {"email": "a@example.com"}}]}
    first, second = upsert_results(items, payload, id_property="email", object_type="contacts")
    assert first == "1"
    assert isinstance(second, RetryableError)
    assert second.message == "HubSpot's answer did not include the contacts upserted by email"


def test_single_upsert_result_without_echo_is_used():
    answers = upsert_results(
        [UpsertInput("x")],
        {"results": [{"id": "9", "properties": {}}]},
        id_property="p",
        object_type="calls",
    )
    assert answers == ["9"]


def test_upsert_result_error_naming_nobody_is_not_pinned_on_an_item():
    items = [UpsertInput("a@example.com"), UpsertInput("b@example.com")]
    payload = {
        "results": [{"id": "1", "properties": {"email": "a@example.com"}}],
        "errors": [{"category": "VALIDATION_ERROR", "message": "something", "context": {}}],
    }
    first, second = upsert_results(items, payload, id_property="email", object_type="contacts")
    assert first == "1"
    assert isinstance(second, RetryableError)
    # one input, one error: that error is its own even when it names nothing
    (only,) = upsert_results(
        [UpsertInput("b@example.com")],
        {"errors": [{"category": "VALIDATION_ERROR", "message": "bad", "context": {}}]},
        id_property="email",
        object_type="contacts",
    )
    assert isinstance(only, HubSpotRefused)
    assert only.message == "HubSpot refused one record of the batch: VALIDATION_ERROR: bad"


def test_association_results_read_hubspots_v4_answer():
    links = [Link("11", "1"), Link("12", "2"), Link("13", "3")]
    payload = {
        "status": "COMPLETE",
        "results": [
            {
                "from": {"id": "11"},
                "to": {"id": "1"},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": 194,
                },
            },
        ],
        "numErrors": 1,
        "errors": [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "no call 12",
                "context": {"fromObjectId": ["12"]},
            }
        ],
    }
    first, second, third = association_results(links, payload)
    assert first == "ok"
    assert isinstance(second, PermanentError)
    assert second.message == "HubSpot refused one record of the batch: OBJECT_NOT_FOUND: no call 12"
    # neither listed as made nor named by the error: not known to exist, so retried
    assert isinstance(third, RetryableError)
    assert third.message == (
        "HubSpot's answer did not include the association of 13 with contact 3"
    )


def test_association_results_also_read_object_id_pairs():
    links = [Link("11", "1"), Link("12", "2")]
    payload = {
        "results": [{"fromObjectId": 11, "toObjectId": 1}, {"fromObjectId": 12, "toObjectId": 2}]
    }
    assert association_results(links, payload) == ["ok", "ok"]
    # an empty answer makes nothing: both are retried
    assert all(isinstance(a, RetryableError) for a in association_results(links, {"results": []}))


def test_search_bodies_stay_under_3000_characters_and_lower_case_values():
    keys = [f"altur:CLL_{n:04d}_" + "x" * 150 for n in range(60)]
    bodies = search_bodies("eventrouter_event_id", keys)
    assert len(bodies) > 1
    values = [v for body in bodies for v in body["filterGroups"][0]["filters"][0]["values"]]
    assert values == [key.lower() for key in keys]
    for body in bodies:
        assert len(encode({**body, "after": "9999999999"})) <= 3000
        assert body["properties"] == ["eventrouter_event_id"]
        assert body["limit"] == 200
        (group,) = body["filterGroups"]
        (condition,) = group["filters"]
        assert condition["propertyName"] == "eventrouter_event_id"
        assert condition["operator"] == "IN"
    assert search_bodies("p", ["A:1", "a:1", "b:2"]) == [
        {
            "filterGroups": [
                {"filters": [{"propertyName": "p", "operator": "IN", "values": ["a:1", "b:2"]}]}
            ],
            "properties": ["p"],
            "limit": 200,
        }
    ]


def test_search_matches_compare_keys_exactly_and_read_paging():
    payload = {
        "total": 4,
        "results": [
            {"id": "7", "properties": {"p": "altur:Abc"}, "createdAt": "2025-01-01T00:00:02.000Z"},
            {"id": "5", "properties": {"p": "altur:Abc"}, "createdAt": "2025-01-01T00:00:01.000Z"},
            {"id": "6", "properties": {"p": "altur:abc"}, "createdAt": "2025-01-01T00:00:00.000Z"},
            {"id": "8", "properties": {"p": "pelcro:k1"}},
        ],
        "paging": {"next": {"after": "4", "link": "?after=4"}},
    }
    found, after = search_matches(payload, "p", ["altur:Abc", "pelcro:k1"])
    assert after == "4"
    assert found == {
        "altur:Abc": [("2025-01-01T00:00:02.000Z", "7"), ("2025-01-01T00:00:01.000Z", "5")],
        "pelcro:k1": [("", "8")],
    }
    assert oldest(found["altur:Abc"]) == "5"
    assert oldest([("t", "10"), ("t", "9")]) == "9"
    assert search_matches({"results": []}, "p", ["x"]) == ({}, None)


def _engagement(key, contact_id="501"):
    return EngagementInput(key, {"eventrouter_event_id": key, "hs_timestamp": "t"}, contact_id)


def test_create_body_links_each_input_to_its_contact():
    body = create_body([_engagement("a:1"), _engagement("a:2", None)], association_type_id=202)
    assert body == {
        "inputs": [
            {
                "properties": {"eventrouter_event_id": "a:1", "hs_timestamp": "t"},
                "objectWriteTraceId": "0",
                "associations": [
                    {
                        "to": {"id": "501"},
                        "types": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}
                        ],
                    }
                ],
            },
            {
                "properties": {"eventrouter_event_id": "a:2", "hs_timestamp": "t"},
                "objectWriteTraceId": "1",
            },
        ]
    }
    assert ASSOCIATION_TYPE_IDS == {"calls": 194, "notes": 202}


def test_create_results_match_on_trace_or_property_never_on_order():
    items = [_engagement("a:1"), _engagement("a:2"), _engagement("a:3"), _engagement("a:4")]
    payload = {
        "status": "COMPLETE",
        "results": [
            {"id": "22", "properties": {"eventrouter_event_id": "a:2"}},
            {"id": "11", "objectWriteTraceId": "0", "properties": {}},
        ],
        "numErrors": 1,
        "errors": [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid: []",
                "context": {"objectWriteTraceId": ["2"]},
            }
        ],
    }
    first, second, third, fourth = create_results(
        items, payload, id_property="eventrouter_event_id", object_type="calls"
    )
    assert (first, second) == ("11", "22")
    assert isinstance(third, HubSpotRefused)
    assert third.message.startswith("HubSpot refused one record of the batch: VALIDATION_ERROR")
    # not answered, not named: it may exist
    assert isinstance(fourth, HubSpotRetryable)
    assert fourth.maybe_written
    assert fourth.message == (
        "HubSpot's answer did not include the calls created for eventrouter_event_id a:4"
    )


def test_update_results_match_on_ids():
    payload = {
        "results": [{"id": "2"}],
        "errors": [{"category": "OBJECT_NOT_FOUND", "message": "gone", "context": {"ids": ["3"]}}],
    }
    first, second, third = update_results(["1", "2", "3"], payload)
    assert isinstance(first, RetryableError)
    assert second == "2"
    assert isinstance(third, HubSpotRefused)
    assert third.message == "HubSpot refused one record of the batch: OBJECT_NOT_FOUND: gone"


def test_unknown_properties_are_read_from_message_and_errors():
    payload = {
        "status": "error",
        "message": (
            "Property values were not valid: "
            '[{"isValid":false,"message":"Property \\"lead_score\\" does not exist",'
            '"error":"PROPERTY_DOESNT_EXIST","name":"lead_score"},'
            '{"isValid":false,"message":"x was not a valid number.","error":"INVALID_FLOAT",'
            '"name":"payment_amount"}]'
        ),
        "errors": [
            {
                "message": 'Property "lead_score" does not exist',
                "code": "PROPERTY_DOESNT_EXIST",
                "context": {"propertyName": ["lead_score"]},
            },
            {
                "message": 'Property "tier" does not exist',
                "code": "PROPERTY_DOESNT_EXIST",
                "context": {"propertyName": ["tier"]},
            },
        ],
        "category": "VALIDATION_ERROR",
    }
    assert unknown_properties(payload) == ["lead_score", "tier"]
    assert unknown_properties({"message": payload["message"]}) == ["lead_score"]
    assert unknown_properties({"errors": payload["errors"]}) == ["lead_score", "tier"]
    error = error_for_response(400, payload, text="", headers={})
    assert isinstance(error, HubSpotRefused)
    assert error.unknown_properties == ("lead_score", "tier")
    assert unknown_properties({"message": "Property values were not valid: [oops"}) == []
    assert error_for_response(404, payload, text="", headers={}).unknown_properties == ()


@pytest.mark.parametrize(
    ("status", "maybe_written"),
    [(None, True), (500, True), (503, True), (408, True), (429, False), (423, False), (477, False)],
)
def test_retryable_errors_say_whether_hubspot_may_have_written(status, maybe_written):
    error = (
        HubSpotRetryable("no answer", status=None)
        if status is None
        else error_for_response(status, None, text="", headers={})
    )
    assert isinstance(error, HubSpotRetryable)
    assert error.maybe_written is maybe_written


def _body(message, category, **extra):
    return {
        "status": "error",
        "message": message,
        "correlationId": "c0ffee",
        "category": category,
        **extra,
    }


def test_429_with_retry_after():
    error = error_for_response(
        429,
        {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
        text="",
        headers={"Retry-After": "3"},
    )
    assert isinstance(error, RetryableError)
    assert error.retry_after == 3.0
    assert error.message == (
        "HubSpot rate limit reached (TEN_SECONDLY_ROLLING, HTTP 429): "
        "RATE_LIMIT: You have reached your ten_secondly_rolling limit."
    )


def test_429_without_retry_after_waits_for_the_window():
    ten = error_for_response(429, {"policyName": "TEN_SECONDLY_ROLLING"}, text="", headers={})
    assert ten.retry_after == 10.0
    interval = error_for_response(
        429, None, text="", headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "2500"}
    )
    assert interval.retry_after == 2.5
    daily = error_for_response(
        429, {"policyName": "DAILY", "message": "daily"}, text="", headers={}
    )
    assert daily.retry_after == 3600.0
    secondly = error_for_response(
        429, {"policyName": "SECONDLY", "errorType": "RATE_LIMIT"}, text="", headers={}
    )
    assert secondly.retry_after == 1.0
    assert secondly.policy == "SECONDLY"
    assert daily.message == "HubSpot rate limit reached (DAILY, HTTP 429): daily"


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (500, {}, None),
        (502, {"Retry-After": "7"}, 7.0),
        (503, {}, None),
        (408, {}, None),
        (423, {}, 2.0),
        (477, {"Retry-After": "30"}, 30.0),
    ],
)
def test_retryable_statuses(status, headers, retry_after):
    error = error_for_response(status, _body("try later", "INTERNAL"), text="", headers=headers)
    assert isinstance(error, RetryableError)
    assert error.retry_after == retry_after


def test_401_says_token_rejected():
    error = error_for_response(
        401,
        _body("Authentication credentials not found.", "INVALID_AUTHENTICATION"),
        text="",
        headers={},
    )
    assert isinstance(error, PermanentError)
    assert error.status == 401
    assert error.message == (
        "HubSpot token rejected (HTTP 401): INVALID_AUTHENTICATION: Authentication credentials "
        "not found.; check the private app's access token"
    )


def test_403_names_missing_scopes():
    body = _body(
        "This app hasn't been granted all required scopes to make this call.",
        "MISSING_SCOPES",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]},
            }
        ],
    )
    error = error_for_response(403, body, text="", headers={})
    assert isinstance(error, PermanentError)
    assert error.message == (
        "HubSpot refused access (HTTP 403): MISSING_SCOPES: This app hasn't been granted all "
        "required scopes to make this call.; the private app needs the scopes crm.objects.contacts.write"
    )


@pytest.mark.parametrize("status", [400, 404, 409, 302])
def test_other_statuses_are_permanent(status):
    error = error_for_response(status, _body("nope", "VALIDATION_ERROR"), text="", headers={})
    assert isinstance(error, HubSpotRefused)
    assert error.status == status
    assert error.category == "VALIDATION_ERROR"
    assert error.message == f"HubSpot HTTP {status}: VALIDATION_ERROR: nope"


def test_non_json_error_body_is_shortened():
    error = error_for_response(502, None, text="<html>\n  Bad   gateway " + "x" * 1000, headers={})
    assert error.message.startswith("HubSpot HTTP 502: <html> Bad gateway xxx")
    assert len(error.message) <= len("HubSpot HTTP 502: ") + 300
