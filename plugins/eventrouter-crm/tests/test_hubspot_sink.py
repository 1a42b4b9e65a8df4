"""The crm sink against a local fake HubSpot: exact requests, batching, idempotency, errors."""

import asyncio
import logging
import socket
import time

import pytest

from eventrouter import PermanentError, RetryableError

TOKEN = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
AUTH = f"Bearer {TOKEN}"
CONNECTED = "f240bbac-87c9-4f6e-bf70-924b57d47db7"
UPSERT_CONTACTS = "/crm/v3/objects/contacts/batch/upsert"
CALLS_PROPERTY = "/crm/v3/properties/calls/eventrouter_event_id"
NOTES_PROPERTY = "/crm/v3/properties/notes/eventrouter_event_id"
SEARCH_CALLS = "/crm/v3/objects/calls/search"
SEARCH_NOTES = "/crm/v3/objects/notes/search"
CREATE_CALLS = "/crm/v3/objects/calls/batch/create"
CREATE_NOTES = "/crm/v3/objects/notes/batch/create"
UPDATE_CALLS = "/crm/v3/objects/calls/batch/update"
UPDATE_NOTES = "/crm/v3/objects/notes/batch/update"
UPSERT_CALLS = "/crm/v3/objects/calls/batch/upsert"
LINK_CALLS = "/crm/v4/associations/calls/contacts/batch/associate/default"
LINK_NOTES = "/crm/v4/associations/notes/contacts/batch/associate/default"
CALL_KEY = "altur:cll_gBoLtd02pUI50QwXkFjB"
CALL_PROPERTIES = {
    "eventrouter_event_id": CALL_KEY,
    "hs_timestamp": "2024-12-19T15:00:10.000Z",
    "hs_call_title": "Outbound call via altur",
    "hs_call_body": (
        "<p>Answered by: human</p><p>altur status: ended</p>"
        "<p><strong>Agent:</strong> Hello am I speaking with Sofía?</p>"
        "<p><strong>Contact:</strong> Yes, who is this?</p>"
    ),
    "hs_call_direction": "OUTBOUND",
    "hs_call_status": "COMPLETED",
    "hs_call_duration": "45000",
    "hs_call_recording_url": "https://api.altur.io/api/v1.0/call/cll_gBoLtd02pUI50QwXkFjB/recording",
    "hs_call_from_number": "+15550000001",
    "hs_call_to_number": "+521234567890",
    "hs_call_disposition": CONNECTED,
}
SECONDLY_429 = {
    "status": "error",
    "message": "You have reached your secondly limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "6828d000-3d2f-4701-8d90-b21e53b0d005",
    "policyName": "SECONDLY",
}


def _search_body(*values, prop="eventrouter_event_id"):
    return {
        "filterGroups": [
            {"filters": [{"propertyName": prop, "operator": "IN", "values": list(values)}]}
        ],
        "properties": [prop],
        "limit": 200,
    }


def _to_contact(contact_id, type_id=194):
    return [
        {
            "to": {"id": contact_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
    ]


def _sent(hubspot, start=0):
    return [(r.method, r.path) for r in hubspot.requests[start:]]


async def test_call_ended_makes_exact_requests(hubspot, make_sink, call_event):
    sink = await make_sink(property_mapping={"Payment Amount": "payment_amount"})
    event = call_event(extracted={"Payment Amount": "1200", "Payment Medium": "app"})
    await sink.deliver(event)

    assert _sent(hubspot) == [
        ("POST", UPSERT_CONTACTS),
        ("GET", CALLS_PROPERTY),
        ("POST", SEARCH_CALLS),
        ("POST", CREATE_CALLS),
    ]
    assert all(r.authorization == AUTH for r in hubspot.requests)
    contact_request, property_request, search_request, create_request = hubspot.requests
    assert contact_request.body == {
        "inputs": [
            {
                "idProperty": "eventrouter_phone",
                "id": "+521234567890",
                "properties": {
                    "payment_amount": "1200",
                    "firstname": "John",
                    "lastname": "Doe",
                    "phone": "+521234567890",
                    "eventrouter_phone": "+521234567890",
                },
            }
        ]
    }
    assert property_request.body is None
    # IN on a string property takes lower-case values
    assert search_request.body == _search_body("altur:cll_gboltd02pui50qwxkfjb")
    contact_id, contact = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    # created with its association, so it can never be left without its contact
    assert create_request.body == {
        "inputs": [
            {
                "properties": CALL_PROPERTIES,
                "objectWriteTraceId": "0",
                "associations": _to_contact(contact_id, 194),
            }
        ]
    }
    call_id, call = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)
    assert contact["payment_amount"] == "1200"
    assert call == CALL_PROPERTIES
    assert hubspot.linked("calls", call_id) == [contact_id]


async def test_contact_with_email_is_upserted_by_email(hubspot, make_sink, call_event):
    sink = await make_sink()
    await sink.deliver(call_event(email="Sofia@Example.com", name="Sofía"))
    body = hubspot.posted(UPSERT_CONTACTS)[0].body
    assert body == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "sofia@example.com",
                "properties": {
                    "firstname": "Sofía",
                    "phone": "+521234567890",
                    "email": "sofia@example.com",
                },
            }
        ]
    }
    contact_id, contact = hubspot.find("contacts", "email", "sofia@example.com")
    assert "eventrouter_phone" not in contact
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", "altur:cll_gBoLtd02pUI50QwXkFjB")
    assert hubspot.linked("calls", call_id) == [contact_id]


async def test_concurrent_deliveries_share_one_contacts_request(hubspot, make_sink, call_event):
    sink = await make_sink(batch_window=0.1)
    events = [call_event(key=f"cll_{n}", phone=f"+5212345678{n:02d}") for n in range(5)]
    await asyncio.gather(*(sink.deliver(event) for event in events))

    contact_requests = hubspot.posted(UPSERT_CONTACTS)
    assert len(contact_requests) == 1
    assert [i["id"] for i in contact_requests[0].body["inputs"]] == [
        f"+5212345678{n:02d}" for n in range(5)
    ]
    (search,) = hubspot.posted(SEARCH_CALLS)
    assert sorted(search.body["filterGroups"][0]["filters"][0]["values"]) == [
        f"altur:cll_{n}" for n in range(5)
    ]
    (create,) = hubspot.posted(CREATE_CALLS)
    assert len(create.body["inputs"]) == 5
    assert hubspot.posted(LINK_CALLS) == []
    assert len(hubspot.objects["contacts"]) == 5
    assert len(hubspot.objects["calls"]) == 5
    # the fake answers in reverse order: each call must still be linked to its own contact
    for n in range(5):
        contact_id, _ = hubspot.find("contacts", "eventrouter_phone", f"+5212345678{n:02d}")
        call_id, _ = hubspot.find("calls", "eventrouter_event_id", f"altur:cll_{n}")
        assert hubspot.linked("calls", call_id) == [contact_id]


async def test_batches_hold_at_most_batch_size(hubspot, make_sink, call_event):
    sink = await make_sink(batch_window=0.2, batch_size=2)
    events = [call_event(key=f"cll_{n}", phone=f"+5212345678{n:02d}") for n in range(5)]
    await asyncio.gather(*(sink.deliver(event) for event in events))
    sizes = sorted(len(r.body["inputs"]) for r in hubspot.posted(UPSERT_CONTACTS))
    assert sizes == [1, 2, 2]
    assert len(hubspot.objects["calls"]) == 5


async def test_same_contact_in_one_batch_is_sent_once(hubspot, make_sink, call_event):
    sink = await make_sink(
        batch_window=0.1,
        property_mapping={"Payment Amount": "payment_amount", "Payment Date": "payment_date"},
    )
    first = call_event(key="cll_a", extracted={"Payment Amount": "100"})
    second = call_event(
        key="cll_b", extracted={"Payment Amount": "200", "Payment Date": "2025-01-02"}
    )
    await asyncio.gather(sink.deliver(first), sink.deliver(second))
    (request,) = hubspot.posted(UPSERT_CONTACTS)
    assert request.body["inputs"] == [
        {
            "idProperty": "eventrouter_phone",
            "id": "+521234567890",
            "properties": {
                "payment_amount": "200",
                "payment_date": "2025-01-02",
                "firstname": "John",
                "lastname": "Doe",
                "phone": "+521234567890",
                "eventrouter_phone": "+521234567890",
            },
        }
    ]
    contact_id, _ = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    for key in ("cll_a", "cll_b"):
        call_id, _ = hubspot.find("calls", "eventrouter_event_id", f"altur:{key}")
        assert hubspot.linked("calls", call_id) == [contact_id]


async def test_redelivery_searches_then_updates_never_creates_twice(hubspot, make_sink, call_event):
    sink = await make_sink()
    event = call_event()
    await sink.deliver(event)
    contact_id, _ = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)

    # another worker process (or this one restarted) knows nothing of the first write: it
    # finds the call by search and updates it
    seen = len(hubspot.requests)
    other = await make_sink()
    await other.deliver(event)
    assert _sent(hubspot, seen) == [
        ("POST", UPSERT_CONTACTS),
        ("GET", CALLS_PROPERTY),
        ("POST", SEARCH_CALLS),
        ("POST", UPDATE_CALLS),
        ("POST", LINK_CALLS),
    ]
    search, update, link = hubspot.requests[seen + 2 :]
    assert search.body == _search_body("altur:cll_gboltd02pui50qwxkfjb")
    assert update.body == {"inputs": [{"id": call_id, "properties": CALL_PROPERTIES}]}
    # found, not created here: the default association makes sure it is linked
    assert link.body == {"inputs": [{"from": {"id": call_id}, "to": {"id": contact_id}}]}

    # the sender delivering the webhook again (a new event id, the same idempotency key) to
    # the first process, which still remembers the call: no search needed
    seen = len(hubspot.requests)
    await sink.deliver(call_event())
    assert _sent(hubspot, seen) == [("POST", UPSERT_CONTACTS), ("POST", UPDATE_CALLS)]
    assert hubspot.requests[-1].body == {"inputs": [{"id": call_id, "properties": CALL_PROPERTIES}]}

    # once its memory is over, search again
    sink.backend.calls.remember = 0
    seen = len(hubspot.requests)
    await sink.deliver(event)
    assert _sent(hubspot, seen) == [
        ("POST", UPSERT_CONTACTS),
        ("POST", SEARCH_CALLS),
        ("POST", UPDATE_CALLS),
        ("POST", LINK_CALLS),
    ]

    assert len(hubspot.posted(CREATE_CALLS)) == 1
    assert len(hubspot.objects["calls"]) == 1
    assert len(hubspot.objects["contacts"]) == 1
    assert hubspot.associations == {("calls", call_id, "contacts", contact_id)}


async def test_a_batch_mixing_known_and_new_calls(hubspot, make_sink, call_event):
    first = await make_sink()
    await first.deliver(call_event(key="cll_a", phone="+521234567801"))
    known_id, _ = hubspot.find("calls", "eventrouter_event_id", "altur:cll_a")

    sink = await make_sink(batch_window=0.1)  # another process
    seen = len(hubspot.requests)
    await asyncio.gather(
        sink.deliver(call_event(key="cll_a", phone="+521234567801")),
        sink.deliver(call_event(key="cll_B", phone="+521234567802")),
        sink.deliver(call_event(key="cll_c", phone="+521234567803")),
    )
    assert sorted(_sent(hubspot, seen)) == sorted(
        [
            ("POST", UPSERT_CONTACTS),
            ("GET", CALLS_PROPERTY),
            ("POST", SEARCH_CALLS),
            ("POST", UPDATE_CALLS),
            ("POST", CREATE_CALLS),
            ("POST", LINK_CALLS),
        ]
    )
    (search,) = hubspot.posted(SEARCH_CALLS)[1:]
    values = search.body["filterGroups"][0]["filters"][0]["values"]
    assert search.body == _search_body(*values)
    assert sorted(values) == ["altur:cll_a", "altur:cll_b", "altur:cll_c"]
    contacts = {
        n: hubspot.find("contacts", "eventrouter_phone", f"+5212345678{n}")[0]
        for n in ("01", "02", "03")
    }
    (update,) = hubspot.posted(UPDATE_CALLS)
    assert [(i["id"], i["properties"]["eventrouter_event_id"]) for i in update.body["inputs"]] == [
        (known_id, "altur:cll_a")
    ]
    (_, create) = hubspot.posted(CREATE_CALLS)
    created = sorted(create.body["inputs"], key=lambda i: i["properties"]["eventrouter_event_id"])
    assert [i["properties"]["eventrouter_event_id"] for i in created] == [
        "altur:cll_B",
        "altur:cll_c",
    ]
    assert sorted(i["objectWriteTraceId"] for i in created) == ["0", "1"]
    assert created[0]["associations"] == _to_contact(contacts["02"])
    assert created[1]["associations"] == _to_contact(contacts["03"])
    (link,) = hubspot.posted(LINK_CALLS)
    assert link.body == {"inputs": [{"from": {"id": known_id}, "to": {"id": contacts["01"]}}]}
    assert len(hubspot.objects["calls"]) == 3
    for key, n in (("cll_a", "01"), ("cll_B", "02"), ("cll_c", "03")):
        call_id, _ = hubspot.find("calls", "eventrouter_event_id", f"altur:{key}")
        assert hubspot.linked("calls", call_id) == [contacts[n]]


async def test_search_pages_and_duplicates_update_the_first_created(hubspot, make_sink, call_event):
    contact_id = hubspot.add("contacts", {"eventrouter_phone": "+521234567890"})
    # three calls with this key already (say, written in the search index's blind spot)
    ids = [hubspot.add("calls", {"eventrouter_event_id": CALL_KEY}) for _ in range(3)]
    hubspot.search_page_cap = 2
    sink = await make_sink()
    await sink.deliver(call_event())
    first, second = hubspot.posted(SEARCH_CALLS)
    assert first.body == _search_body("altur:cll_gboltd02pui50qwxkfjb")
    assert second.body == {**first.body, "after": "2"}
    (update,) = hubspot.posted(UPDATE_CALLS)
    assert update.body == {"inputs": [{"id": ids[0], "properties": CALL_PROPERTIES}]}
    assert hubspot.posted(CREATE_CALLS) == []
    assert hubspot.linked("calls", ids[0]) == [contact_id]


async def test_a_write_in_flight_is_awaited_not_repeated(hubspot, make_sink, call_event):
    """The core gives up on a delivery (its timeout) while the create is still on its way:
    the retry in this process waits for that create and updates what it made."""
    sink = await make_sink()
    hubspot.index_lag = 30  # search cannot see anything new in this test
    hubspot.delays[CREATE_CALLS] = 0.5
    event = call_event()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await sink.deliver(event)
    seen = len(hubspot.requests)
    await asyncio.wait_for(sink.deliver(event), 5)
    assert _sent(hubspot, seen) == [("POST", UPSERT_CONTACTS), ("POST", UPDATE_CALLS)]
    assert len(hubspot.posted(CREATE_CALLS)) == 1
    assert len(hubspot.objects["calls"]) == 1


async def test_a_lost_create_answer_is_retried_after_the_index_lag(hubspot, make_sink, call_event):
    sink = await make_sink(request_timeout=0.2)
    hubspot.answer_delays[CREATE_CALLS] = 0.5
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(call_event())
    assert caught.value.retry_after == 15.0
    assert caught.value.message == (
        "HubSpot did not answer POST /crm/v3/objects/calls/batch/create within 0.2s (it may have "
        "been created: retried in 15s at the earliest, once HubSpot's search sees it)"
    )
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)  # HubSpot created it
    del hubspot.answer_delays[CREATE_CALLS]
    seen = len(hubspot.requests)
    await sink.deliver(call_event())  # the retry: search sees it by now
    assert _sent(hubspot, seen) == [
        ("POST", UPSERT_CONTACTS),
        ("POST", SEARCH_CALLS),
        ("POST", UPDATE_CALLS),
        ("POST", LINK_CALLS),
    ]
    assert len(hubspot.objects["calls"]) == 1
    assert hubspot.requests[-2].body["inputs"][0]["id"] == call_id


async def test_429_on_search_pauses_searches_for_retry_after(hubspot, make_sink, call_event):
    sink = await make_sink()
    hubspot.fail(SEARCH_CALLS, 429, SECONDLY_429, headers={"Retry-After": "0.5"})
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(call_event())
    assert caught.value.retry_after == pytest.approx(0.5)
    assert caught.value.message == (
        "HubSpot rate limit reached (SECONDLY, HTTP 429): RATE_LIMIT: You have reached your "
        "secondly limit."
    )
    assert hubspot.posted(CREATE_CALLS) == []  # nothing is created unsearched

    await asyncio.wait_for(sink.deliver(call_event()), 5)
    first, second = hubspot.posted(SEARCH_CALLS)
    assert second.at - first.at >= 0.45  # waited out Retry-After before searching again
    # only searches wait: the contact upsert went at once
    assert hubspot.posted(UPSERT_CONTACTS)[1].at - first.at < 0.4
    assert second.body == first.body == _search_body("altur:cll_gboltd02pui50qwxkfjb")
    assert len(hubspot.posted(CREATE_CALLS)) == 1
    assert len(hubspot.objects["calls"]) == 1


async def test_searches_keep_to_their_own_rate(hubspot, make_sink, call_event):
    sink = await make_sink(search_requests_per_second=2)
    for n in range(3):
        await asyncio.wait_for(sink.deliver(call_event(key=f"cll_{n}")), 5)
    first, _, third = hubspot.posted(SEARCH_CALLS)
    assert third.at - first.at >= 0.9  # two a second
    assert len(hubspot.objects["calls"]) == 3


async def test_unique_event_id_property_uses_batch_upsert(hubspot, make_sink, call_event):
    """An account whose property is unique after all: upsert by it, then link."""
    hubspot.properties["calls"]["eventrouter_event_id"]["hasUniqueValue"] = True
    sink = await make_sink()
    await sink.deliver(call_event())
    await sink.deliver(call_event())
    assert _sent(hubspot) == [
        ("POST", UPSERT_CONTACTS),
        ("GET", CALLS_PROPERTY),
        ("POST", UPSERT_CALLS),
        ("POST", LINK_CALLS),
        ("POST", UPSERT_CONTACTS),
        ("POST", UPSERT_CALLS),
        ("POST", LINK_CALLS),
    ]
    contact_id, _ = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)
    assert hubspot.posted(UPSERT_CALLS)[0].body == {
        "inputs": [
            {"idProperty": "eventrouter_event_id", "id": CALL_KEY, "properties": CALL_PROPERTIES}
        ]
    }
    assert hubspot.posted(LINK_CALLS)[0].body == {
        "inputs": [{"from": {"id": call_id}, "to": {"id": contact_id}}]
    }
    assert hubspot.linked("calls", call_id) == [contact_id]
    assert len(hubspot.objects["calls"]) == 1


async def test_a_link_hubspot_does_not_confirm_is_retried(hubspot, make_sink, call_event):
    hubspot.properties["calls"]["eventrouter_event_id"]["hasUniqueValue"] = True
    sink = await make_sink()
    hubspot.fail(LINK_CALLS, 200, {"status": "COMPLETE", "results": []})
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(call_event())
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)
    contact_id, _ = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    assert caught.value.message == (
        f"HubSpot's answer did not include the association of {call_id} with contact {contact_id}"
    )
    await sink.deliver(call_event())
    assert hubspot.linked("calls", call_id) == [contact_id]


async def test_a_found_call_whose_link_failed_is_searched_and_linked_again(
    hubspot, make_sink, call_event
):
    first = await make_sink()
    await first.deliver(call_event())
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)
    hubspot.associations.clear()  # say, written by a version that lost its link
    other = await make_sink()
    hubspot.fail(LINK_CALLS, 503, {"status": "error", "message": "unavailable"})
    with pytest.raises(RetryableError):
        await other.deliver(call_event())
    seen = len(hubspot.requests)
    await other.deliver(call_event())
    assert _sent(hubspot, seen) == [
        ("POST", UPSERT_CONTACTS),
        ("POST", SEARCH_CALLS),
        ("POST", UPDATE_CALLS),
        ("POST", LINK_CALLS),
    ]
    contact_id, _ = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    assert hubspot.linked("calls", call_id) == [contact_id]


async def test_missing_event_id_property_is_reported(hubspot, make_sink, call_event):
    definition = hubspot.properties["calls"].pop("eventrouter_event_id")
    sink = await make_sink()
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(call_event())
    assert caught.value.message == (
        "HubSpot has no calls property eventrouter_event_id: create it (single-line text) or "
        "set create_properties = true"
    )
    hubspot.properties["calls"]["eventrouter_event_id"] = definition
    await sink.deliver(call_event())  # read again, not remembered as missing
    assert len(hubspot.posted(CALLS_PROPERTY)) == 2
    assert len(hubspot.objects["calls"]) == 1


async def test_unknown_mapped_property_is_left_out_and_the_call_still_logged(
    hubspot, make_sink, call_event, caplog
):
    caplog.set_level(logging.DEBUG)
    sink = await make_sink(
        property_mapping={"Payment Amount": "payment_amount", "Lead Score": "lead_score"}
    )
    score = "lead-score-7731"
    await sink.deliver(call_event(extracted={"Payment Amount": "1200", "Lead Score": score}))

    refused, accepted = hubspot.posted(UPSERT_CONTACTS)
    assert refused.body["inputs"][0]["properties"]["lead_score"] == score
    assert accepted.body == {
        "inputs": [
            {
                "idProperty": "eventrouter_phone",
                "id": "+521234567890",
                "properties": {
                    "payment_amount": "1200",
                    "firstname": "John",
                    "lastname": "Doe",
                    "phone": "+521234567890",
                    "eventrouter_phone": "+521234567890",
                },
            }
        ]
    }
    contact_id, contact = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    assert "lead_score" not in contact
    call_id, _ = hubspot.find("calls", "eventrouter_event_id", CALL_KEY)
    assert hubspot.linked("calls", call_id) == [contact_id]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "HubSpot has no contact property lead_score (named in property_mapping): contacts are "
        "written without it for the next 10 minutes; create the property in HubSpot or correct "
        "property_mapping"
    ]
    assert score not in caplog.text
    assert TOKEN not in caplog.text

    # the next contact is sent without it at once
    await sink.deliver(
        call_event(key="cll_2", phone="+521234567891", extracted={"Lead Score": "12"})
    )
    (third,) = hubspot.posted(UPSERT_CONTACTS)[2:]
    assert "lead_score" not in third.body["inputs"][0]["properties"]
    assert len(hubspot.objects["calls"]) == 2


async def test_unknown_property_outside_the_mapping_stays_permanent(hubspot, make_sink, call_event):
    del hubspot.properties["contacts"]["lastname"]  # written by the sink, not mapped
    sink = await make_sink(property_mapping={"Payment Amount": "payment_amount"})
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(call_event(extracted={"Payment Amount": "1200"}))
    assert caught.value.message.startswith(
        "HubSpot HTTP 400: VALIDATION_ERROR: Property values were not valid: "
    )
    assert '"error": "PROPERTY_DOESNT_EXIST", "name": "lastname"' in caught.value.message
    assert len(hubspot.posted(UPSERT_CONTACTS)) == 1
    assert hubspot.objects["calls"] == {}


async def test_campaign_event_becomes_a_note(hubspot, make_sink, campaign_event):
    sink = await make_sink()
    event = campaign_event()
    await sink.deliver(event)
    await sink.deliver(event)
    assert _sent(hubspot) == [
        ("POST", UPSERT_CONTACTS),
        ("GET", NOTES_PROPERTY),
        ("POST", SEARCH_NOTES),
        ("POST", CREATE_NOTES),
        ("POST", UPSERT_CONTACTS),
        ("POST", UPDATE_NOTES),
    ]
    contact_id, contact = hubspot.find("contacts", "email", "ana@example.com")
    note_properties = {
        "eventrouter_event_id": "pelcro:evt_5tH9aB2nQ8vR3mZ1cP0k",
        "hs_timestamp": "2026-06-08T18:00:00.000Z",
        "hs_note_body": (
            "<p><strong>Campaign triggered</strong></p>"
            "<p>Campaign: Spring &lt;Promo&gt; (542)</p><p>Status: active</p>"
            "<p>Run: run_77</p><p>Stats: rate=0.25, targeted=120</p>"
            "<p>Source: pelcro (pelcro campaign.triggered)</p>"
        ),
    }
    assert hubspot.posted(SEARCH_NOTES)[0].body == _search_body("pelcro:evt_5th9ab2nq8vr3mz1cp0k")
    assert hubspot.posted(CREATE_NOTES)[0].body == {
        "inputs": [
            {
                "properties": note_properties,
                "objectWriteTraceId": "0",
                "associations": _to_contact(contact_id, 202),
            }
        ]
    }
    assert len(hubspot.objects["notes"]) == 1
    note_id, _ = hubspot.find("notes", "eventrouter_event_id", "pelcro:evt_5tH9aB2nQ8vR3mZ1cP0k")
    assert hubspot.posted(UPDATE_NOTES)[0].body == {
        "inputs": [{"id": note_id, "properties": note_properties}]
    }
    assert contact == {"email": "ana@example.com", "firstname": "Ana", "lastname": "Díaz"}
    assert hubspot.linked("notes", note_id) == [contact_id]


async def test_event_about_nobody_writes_nothing(hubspot, make_sink, campaign_event):
    sink = await make_sink()
    await sink.deliver(campaign_event(email=None, phone=None, event_type="campaign.completed"))
    assert hubspot.requests == []


async def test_one_invalid_contact_does_not_fail_its_batch(hubspot, make_sink, call_event):
    sink = await make_sink(batch_window=0.1, property_mapping={"Payment Amount": "payment_amount"})
    good = call_event(key="cll_good", phone="+521234567801", extracted={"Payment Amount": "1200"})
    bad = call_event(
        key="cll_bad", phone="+521234567802", extracted={"Payment Amount": "twelve hundred"}
    )
    results = await asyncio.gather(sink.deliver(good), sink.deliver(bad), return_exceptions=True)

    assert results[0] is None
    assert isinstance(results[1], PermanentError)
    assert results[1].message.startswith(
        "HubSpot HTTP 400: VALIDATION_ERROR: Property values were not valid: "
    )
    assert "INVALID_FLOAT" in results[1].message
    sizes = [len(r.body["inputs"]) for r in hubspot.posted(UPSERT_CONTACTS)]
    assert sorted(sizes) == [1, 1, 2]
    assert sizes[0] == 2
    assert (
        hubspot.find("contacts", "eventrouter_phone", "+521234567801")[1]["payment_amount"]
        == "1200"
    )
    assert len(hubspot.objects["calls"]) == 1


async def test_partial_success_207(hubspot, make_sink, campaign_event):
    sink = await make_sink(batch_window=0.1)
    hubspot.fail(
        UPSERT_CONTACTS,
        207,
        {
            "status": "COMPLETE",
            "results": [{"id": "501", "properties": {"email": "ana@example.com"}, "new": True}],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Email address bo@bad is invalid",
                    "context": {"ids": ["bo@example.com"]},
                }
            ],
        },
    )
    hubspot.objects["contacts"]["501"] = {"email": "ana@example.com"}
    results = await asyncio.gather(
        sink.deliver(campaign_event(key="k1", email="ana@example.com")),
        sink.deliver(campaign_event(key="k2", email="bo@example.com")),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], PermanentError)
    assert results[1].message == (
        "HubSpot refused one record of the batch: VALIDATION_ERROR: Email address bo@bad is invalid"
    )
    note_id, _ = hubspot.find("notes", "eventrouter_event_id", "pelcro:k1")
    assert hubspot.linked("notes", note_id) == ["501"]
    assert len(hubspot.objects["notes"]) == 1


async def test_429_is_retryable_with_retry_after_and_pauses_other_requests(
    hubspot, make_sink, campaign_event
):
    sink = await make_sink()
    hubspot.fail(
        UPSERT_CONTACTS,
        429,
        {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": "0b4d",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
        headers={"Retry-After": "0.4"},
    )
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(campaign_event())
    assert caught.value.retry_after == pytest.approx(0.4)
    assert caught.value.message == (
        "HubSpot rate limit reached (TEN_SECONDLY_ROLLING, HTTP 429): "
        "RATE_LIMIT: You have reached your ten_secondly_rolling limit."
    )
    started = time.monotonic()
    await sink.deliver(campaign_event())
    assert time.monotonic() - started >= 0.3  # waited out the pause before asking again
    assert len(hubspot.posted(UPSERT_CONTACTS)) == 2
    assert len(hubspot.objects["notes"]) == 1


async def test_long_rate_limit_pause_fails_at_once(hubspot, make_sink, campaign_event):
    sink = await make_sink()
    hubspot.fail(
        UPSERT_CONTACTS,
        429,
        {
            "status": "error",
            "message": "You have reached your daily limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "DAILY",
        },
    )
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(campaign_event())
    assert caught.value.retry_after == 3600.0
    with pytest.raises(RetryableError) as again:
        await sink.deliver(campaign_event())
    assert 3500 < again.value.retry_after <= 3600
    assert again.value.message.startswith("rate limited: requests paused for ")
    assert len(hubspot.requests) == 1


@pytest.mark.parametrize(
    ("path", "status", "body", "headers", "retry_after"),
    [
        (
            SEARCH_CALLS,
            500,
            {"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"},
            {},
            None,
        ),
        (
            SEARCH_CALLS,
            503,
            {"status": "error", "message": "unavailable"},
            {"Retry-After": "2"},
            2.0,
        ),
        # a create that failed with 5xx may have been carried out: retried once search sees it
        (
            CREATE_CALLS,
            500,
            {"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"},
            {},
            15.0,
        ),
        (CREATE_CALLS, 502, "<html>bad gateway</html>", {}, 15.0),
        (
            CREATE_CALLS,
            503,
            {"status": "error", "message": "unavailable"},
            {"Retry-After": "2"},
            15.0,
        ),
        # refused before anything was written: HubSpot's wait applies
        (
            CREATE_CALLS,
            423,
            {"status": "error", "message": "locked", "category": "LOCKED"},
            {},
            2.0,
        ),
    ],
)
async def test_server_errors_are_retryable(
    hubspot, make_sink, call_event, path, status, body, headers, retry_after
):
    sink = await make_sink()
    hubspot.fail(path, status, body, headers=headers)
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(call_event())
    assert caught.value.retry_after == retry_after
    assert caught.value.message.startswith("HubSpot ")
    assert f"HTTP {status}" in caught.value.message
    assert ("it may have been created" in caught.value.message) is (retry_after == 15.0)
    await sink.deliver(call_event())
    assert len(hubspot.objects["calls"]) == 1


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            {
                "status": "error",
                "message": "Property values were not valid",
                "category": "VALIDATION_ERROR",
            },
            "HubSpot HTTP 400: VALIDATION_ERROR: Property values were not valid",
        ),
        (
            403,
            {
                "status": "error",
                "message": "This app hasn't been granted all required scopes to make this call.",
                "category": "MISSING_SCOPES",
                "errors": [
                    {
                        "message": "scopes",
                        "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]},
                    }
                ],
            },
            "HubSpot refused access (HTTP 403): MISSING_SCOPES: This app hasn't been granted all required "
            "scopes to make this call.; the private app needs the scopes crm.objects.contacts.write",
        ),
        (
            404,
            {
                "status": "error",
                "message": "Unable to infer object type from: calls",
                "category": "OBJECT_NOT_FOUND",
            },
            "HubSpot HTTP 404: OBJECT_NOT_FOUND: Unable to infer object type from: calls",
        ),
    ],
)
async def test_client_errors_are_permanent(hubspot, make_sink, call_event, status, body, message):
    sink = await make_sink()
    hubspot.fail(CREATE_CALLS, status, body)
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(call_event())
    assert caught.value.message == message
    assert hubspot.objects["calls"] == {}


async def test_rejected_token_is_permanent_and_never_repeated(
    hubspot, make_sink, call_event, caplog
):
    caplog.set_level(logging.DEBUG)
    wrong = "pat-na1-ffffffff-0000-0000-0000-000000000000"
    sink = await make_sink(token=wrong)
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(call_event())
    assert caught.value.message.startswith(
        "HubSpot token rejected (HTTP 401): INVALID_AUTHENTICATION: "
    )
    assert caught.value.message.endswith("; check the private app's access token")
    assert hubspot.requests[0].authorization == f"Bearer {wrong}"
    assert wrong not in str(caught.value)
    assert wrong not in caplog.text


async def test_token_echoed_by_the_server_is_scrubbed(hubspot, make_sink, call_event, caplog):
    caplog.set_level(logging.DEBUG)
    sink = await make_sink()
    hubspot.fail(
        UPSERT_CONTACTS,
        400,
        {
            "status": "error",
            "message": f"bad header Bearer {TOKEN}",
            "category": "VALIDATION_ERROR",
        },
    )
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(call_event())
    assert (
        caught.value.message == "HubSpot HTTP 400: VALIDATION_ERROR: bad header Bearer [redacted]"
    )
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value.args)
    assert TOKEN not in caplog.text


async def test_unreachable_hubspot_is_retryable(make_sink, call_event, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = await make_sink(api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(call_event())
    assert caught.value.message.startswith(
        "HubSpot unreachable (POST /crm/v3/objects/contacts/batch/upsert): ClientConnectorError"
    )
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caplog.text


async def test_slow_hubspot_times_out_as_retryable(hubspot, make_sink, call_event):
    sink = await make_sink(request_timeout=0.2)
    hubspot.delays[UPSERT_CONTACTS] = 2.0
    started = time.monotonic()
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(call_event())
    assert time.monotonic() - started < 1.5
    assert caught.value.message == (
        "HubSpot did not answer POST /crm/v3/objects/contacts/batch/upsert within 0.2s"
    )
    assert caught.value.retry_after is None


async def test_properties_are_created_when_asked(hubspot, make_sink, call_event, campaign_event):
    hubspot.without_custom_properties()
    sink = await make_sink(create_properties=True)
    await asyncio.gather(sink.deliver(call_event()), sink.deliver(campaign_event()))
    created = [
        (r.path, r.body)
        for r in hubspot.requests
        if r.method == "POST" and r.path.startswith("/crm/v3/properties")
    ]
    assert [path for path, _ in created] == [
        "/crm/v3/properties/contacts/groups",
        "/crm/v3/properties/contacts",
        "/crm/v3/properties/calls/groups",
        "/crm/v3/properties/calls",
        "/crm/v3/properties/notes/groups",
        "/crm/v3/properties/notes",
    ]
    assert created[0][1] == {"name": "eventrouter", "label": "eventrouter", "displayOrder": -1}
    assert created[1][1] == {
        "name": "eventrouter_phone",
        "label": "Eventrouter phone",
        "description": "Phone number eventrouter matches contacts known only by phone on",
        "groupName": "eventrouter",
        "type": "string",
        "fieldType": "text",
        "hasUniqueValue": True,
    }
    # engagements cannot have unique properties: a plain one, found by search
    assert created[3][1] == {
        "name": "eventrouter_event_id",
        "label": "Eventrouter event id",
        "description": "The webhook this call was logged from (a re-delivery updates this call)",
        "groupName": "eventrouter",
        "type": "string",
        "fieldType": "text",
    }
    assert "hasUniqueValue" not in created[5][1]
    assert hubspot.properties["calls"]["eventrouter_event_id"] == {
        "type": "string",
        "hasUniqueValue": False,
    }
    assert {r.path for r in hubspot.requests if r.method == "GET"} == {
        CALLS_PROPERTY,
        NOTES_PROPERTY,
    }
    assert len(hubspot.objects["calls"]) == 1
    assert len(hubspot.objects["notes"]) == 1

    # a second sink (a restart) finds them there: 409 is not an error
    again = await make_sink(create_properties=True)
    await again.deliver(call_event(key="cll_2"))
    assert len(hubspot.objects["calls"]) == 2


async def test_property_creation_failure_is_reported_and_retried(hubspot, make_sink, call_event):
    hubspot.without_custom_properties()
    sink = await make_sink(create_properties=True)
    hubspot.fail(
        "/crm/v3/properties/contacts/groups",
        403,
        {"status": "error", "message": "missing scopes", "category": "MISSING_SCOPES"},
    )
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(call_event())
    assert (
        caught.value.message == "HubSpot refused access (HTTP 403): MISSING_SCOPES: missing scopes"
    )
    await sink.deliver(call_event())
    assert len(hubspot.objects["calls"]) == 1


async def test_close_sends_what_is_pending(hubspot, make_sink, call_event):
    sink = await make_sink(batch_window=5)
    delivery = asyncio.create_task(sink.deliver(call_event()))
    await asyncio.sleep(0.05)
    assert hubspot.requests == []
    await sink.backend.close()  # a shutdown: pending batches go now, not after the window
    await asyncio.wait_for(delivery, 2)
    assert len(hubspot.objects["calls"]) == 1


async def test_a_delivered_batch_shares_its_requests_and_refuses_only_the_bad_event(
    hubspot, make_sink, call_event
):
    sink = await make_sink(batch_window=0.1, property_mapping={"Payment Amount": "payment_amount"})
    assert sink.delivers_batches
    good = [
        call_event(key=f"cll_{n}", phone=f"+5212345678{n:02d}", extracted={"Payment Amount": "9"})
        for n in range(4)
    ]
    bad = call_event(key="cll_bad", phone="+521234567899", extracted={"Payment Amount": "nine"})

    refused = await sink.deliver_batch([*good, bad])

    assert list(refused) == [bad.id]
    assert isinstance(refused[bad.id], PermanentError)
    assert "INVALID_FLOAT" in refused[bad.id].message
    # the batch's contacts went in one request (the bad one then alone), its calls in one
    sizes = [len(r.body["inputs"]) for r in hubspot.posted(UPSERT_CONTACTS)]
    assert sizes[0] == 5, sizes
    (create,) = hubspot.posted(CREATE_CALLS)
    assert len(create.body["inputs"]) == 4
    assert len(hubspot.objects["calls"]) == 4
