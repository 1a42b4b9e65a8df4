from datetime import UTC, datetime

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventData,
)
from eventrouter_crm.mapping import (
    call_record,
    contact_record,
    external_id,
    mapped_properties,
    note_record,
    plan_event,
)

STARTED = datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC)
ENDED = datetime(2024, 12, 19, 15, 0, 55, tzinfo=UTC)
NOTE_TYPES = ["campaign.*", "call.attempts_exhausted"]
MAPPING = {"Payment Amount": "payment_amount", "payment date": "payment_date"}


def test_call_ended_plans_contact_and_call(call_event):
    event = call_event(
        extracted={"Payment Amount": "1200", "Payment Date": "2024-12-26", "Payment Medium": "app"}
    )
    plan = plan_event(event, property_mapping=MAPPING, note_types=NOTE_TYPES)
    assert plan.note is None
    contact = plan.contact
    assert contact is not None
    assert contact.email is None
    assert contact.phone == "+521234567890"
    assert contact.first_name == "John"
    assert contact.last_name == "Doe"
    assert contact.properties == {"payment_amount": "1200", "payment_date": "2024-12-26"}
    call = plan.call
    assert call is not None
    assert call.external_id == "altur:cll_gBoLtd02pUI50QwXkFjB"
    assert call.timestamp == STARTED
    assert call.title == "Outbound call via altur"
    assert call.status == CallStatus.COMPLETED
    assert call.direction == CallDirection.OUTBOUND
    assert call.answered_by == AnsweredBy.HUMAN
    assert call.duration_seconds == 45
    assert (
        call.recording_url
        == "https://api.altur.io/api/v1.0/call/cll_gBoLtd02pUI50QwXkFjB/recording"
    )
    assert call.from_number == "+15550000001"
    assert call.to_number == "+521234567890"
    assert call.summary == ("Answered by: human", "altur status: ended")
    assert [(t.speaker, t.text) for t in call.transcript] == [
        ("agent", "Hello am I speaking with Sofía?"),
        ("contact", "Yes, who is this?"),
    ]


def test_call_without_contact_uses_the_other_party_number(call_event):
    outbound = call_event(phone=None, to_number="+14155550100", name=None)
    event = outbound.evolve(data=EventData(call=outbound.data.call))
    contact = contact_record(event, {})
    assert contact is not None
    assert contact.phone == "+14155550100"
    assert contact.email is None
    assert contact.first_name is None
    inbound = event.evolve(
        data=EventData(
            call=Call(
                direction=CallDirection.INBOUND, from_number="+14155550199", to_number="+1555"
            )
        )
    )
    assert contact_record(inbound, {}).phone == "+14155550199"
    unknown = event.evolve(data=EventData(call=Call(from_number="+14155550199")))
    assert contact_record(unknown, {}) is None


def test_email_is_lower_cased_and_invalid_ones_dropped(call_event):
    event = call_event(email="  Sofia.Perez@Example.COM ", phone=None, to_number=None)
    assert contact_record(event, {}).email == "sofia.perez@example.com"
    assert contact_record(event, {}).phone is None
    bad = call_event(email="n/a", phone="+521234567890")
    assert contact_record(bad, {}).email is None
    assert contact_record(bad, {}).phone == "+521234567890"


def test_name_split(call_event):
    assert contact_record(call_event(name="Sofía"), {}).first_name == "Sofía"
    assert contact_record(call_event(name="Sofía"), {}).last_name is None
    many = contact_record(call_event(name=" María José de la Cruz "), {})
    assert (many.first_name, many.last_name) == ("María", "José de la Cruz")


def test_mapped_properties_values():
    extracted = {
        "Payment Amount": 1200.0,
        "PAYMENT DATE": "2024-12-26",
        "Promise": True,
        "Tags": ["payment_promise", "call_later"],
        "Empty": "  ",
        "Nothing": None,
        "Nested": {"b": 1, "a": "x"},
        "Ratio": 0.125,
    }
    mapping = {
        "Payment Amount": "payment_amount",
        "payment date": "payment_date",
        "Promise": "promise",
        "Tags": "tags",
        "Empty": "empty",
        "Nothing": "nothing",
        "Missing": "missing",
        "Nested": "nested",
        "Ratio": "ratio",
    }
    assert mapped_properties(extracted, mapping) == {
        "payment_amount": "1200",
        "payment_date": "2024-12-26",
        "promise": "true",
        "tags": "payment_promise;call_later",
        "nested": '{"a":"x","b":1}',
        "ratio": "0.125",
    }
    assert mapped_properties("not a dict", mapping) == {}
    assert mapped_properties(extracted, {}) == {}


def test_duration_from_timestamps_and_timestamp_fallbacks(call_event):
    event = call_event(duration_seconds=None)
    assert call_record(event).duration_seconds == 45
    event = call_event(duration_seconds=None, started_at=None)
    record = call_record(event)
    assert record.duration_seconds is None
    assert record.timestamp == ENDED
    event = call_event(duration_seconds=None, started_at=None, ended_at=None)
    assert call_record(event).timestamp == event.time


def test_call_title_and_summary_without_direction(call_event):
    event = call_event(direction=None, answered_by=AnsweredBy.UNKNOWN, provider_status="completed")
    record = call_record(event)
    assert record.title == "Call via altur"
    assert record.summary == ()


def test_campaign_event_plans_a_note(campaign_event):
    event = campaign_event()
    plan = plan_event(event, property_mapping={}, note_types=NOTE_TYPES)
    assert plan.call is None
    assert plan.contact.email == "ana@example.com"
    assert (plan.contact.first_name, plan.contact.last_name) == ("Ana", "Díaz")
    note = plan.note
    assert note.external_id == "pelcro:evt_5tH9aB2nQ8vR3mZ1cP0k"
    assert note.timestamp == datetime(2026, 6, 8, 18, 0, tzinfo=UTC)
    assert note.title == "Campaign triggered"
    assert note.lines == (
        "Campaign: Spring <Promo> (542)",
        "Status: active",
        "Run: run_77",
        "Stats: rate=0.25, targeted=120",
        "Source: pelcro (pelcro campaign.triggered)",
    )


def test_attempts_exhausted_note():
    event = Event(
        id="evt_1",
        source="exotel",
        type="call.attempts_exhausted",
        time=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        provider="exotel",
        provider_type="call_schedule",
        idempotency_key="camp_1:+919876543210:a,b,c",
        received_at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        data=EventData(
            contact=Contact(phone="+919876543210"),
            call=Call(status=CallStatus.NO_ANSWER, attempt_ids=("a", "b", "c")),
            campaign=Campaign(
                id="camp_1",
                status=CampaignStatus.COMPLETED,
                previous_status=CampaignStatus.ACTIVE,
                cycle=2,
                next_cycle_at=datetime(2026, 1, 6, 9, 0, tzinfo=UTC),
                report_url="https://exotel.example/report.csv",
            ),
        ),
    )
    plan = plan_event(event, property_mapping={}, note_types=NOTE_TYPES)
    assert plan.call is None
    assert plan.contact.phone == "+919876543210"
    assert plan.note.title == "Call attempts exhausted"
    assert plan.note.lines == (
        "Campaign: camp_1",
        "Status: completed (was active)",
        "Cycle: 2",
        "Next cycle: 2026-01-06T09:00:00+00:00",
        "Report: https://exotel.example/report.csv",
        "Call attempts: 3",
        "Last call status: no_answer",
        "Source: exotel (exotel call_schedule)",
    )
    assert note_record(event).external_id == "exotel:camp_1:+919876543210:a,b,c"


def test_event_without_contact_plans_nothing(campaign_event):
    event = campaign_event(email=None, phone=None)
    plan = plan_event(event, property_mapping={}, note_types=NOTE_TYPES)
    assert plan.empty
    assert plan.note is None


def test_other_types_plan_the_contact_only(campaign_event):
    event = campaign_event(event_type="pelcro.subscription.created")
    plan = plan_event(event, property_mapping={}, note_types=NOTE_TYPES)
    assert plan.contact.email == "ana@example.com"
    assert plan.note is None
    assert plan.call is None
    assert not plan.empty
    only_triggered = plan_event(
        campaign_event(event_type="campaign.completed"),
        property_mapping={},
        note_types=["campaign.triggered"],
    )
    assert only_triggered.note is None


def test_long_idempotency_keys_are_hashed(campaign_event):
    event = campaign_event(key="k" * 300)
    value = external_id(event)
    assert value.startswith("pelcro:sha256:")
    assert len(value) == len("pelcro:sha256:") + 64
    assert external_id(campaign_event(key="k" * 300)) == value
    assert external_id(campaign_event(key="k" * 301)) != value


def test_an_event_read_back_from_the_store_plans_the_same(call_event, campaign_event):
    for event in (
        call_event(extracted={"Payment Amount": "1200"}, answered_by=AnsweredBy.MACHINE),
        campaign_event(),
    ):
        again = Event.from_json(event.to_json())
        options = {"property_mapping": MAPPING, "note_types": NOTE_TYPES}
        assert plan_event(again, **options) == plan_event(event, **options)
