"""Messages, views and templates: pure functions from events to Block Kit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    EventData,
    TranscriptTurn,
)
from eventrouter.testing import structure_options
from eventrouter_slack import SlackOptions, SlackSink
from eventrouter_slack.messages import default_message, digest_message
from eventrouter_slack.templates import Template, TemplateSet
from eventrouter_slack.view import event_view, is_stalled

T0 = datetime(2026, 6, 8, 18, 0, tzinfo=UTC)
TS = int(T0.timestamp())
NEXT = datetime(2026, 6, 9, 15, 0, tzinfo=UTC)
WHEN = f"<!date^{TS}^{{date_short_pretty}} {{time}}|2026-06-08T18:00:00+00:00>"
NEXT_WHEN = (
    f"<!date^{int(NEXT.timestamp())}^{{date_short_pretty}} {{time}}|2026-06-09T15:00:00+00:00>"
)

CONTACT = Contact(phone="+521234567890", name="Sofía <!channel>", email="s@example.com")


def header(message):
    assert message.blocks[0]["type"] == "header"
    assert message.blocks[0]["text"]["type"] == "plain_text"
    assert message.blocks[0]["text"]["emoji"] is True
    return message.blocks[0]["text"]["text"]


def section(message):
    assert message.blocks[1]["type"] == "section"
    return message.blocks[1]


def fields(message):
    return [f["text"] for f in section(message).get("fields", [])]


def context(message):
    block = message.blocks[-1]
    assert block["type"] == "context"
    assert len(block["elements"]) == 1
    return block["elements"][0]["text"]


def sink(**options):
    options.setdefault("webhook_url", "https://hooks.slack.com/services/T/B/x")
    instance = SlackSink("alerts", structure_options(options, SlackOptions))
    assert list(instance.check()) == []
    return instance


# -- the view ------------------------------------------------------------------------------


def test_view_flattens_every_normalised_part(make_event):
    event = make_event(
        "call.ended",
        data=EventData(
            contact=CONTACT,
            call=Call(
                id="cll_1",
                direction=CallDirection.OUTBOUND,
                status=CallStatus.NO_ANSWER,
                provider_status="no-answer",
                answered_by=AnsweredBy.MACHINE,
                started_at=T0,
                duration_seconds=45,
                attempt_ids=("a1", "a2"),
                transcript=(TranscriptTurn("agent", "Hola"), TranscriptTurn("contact", "Sí")),
            ),
            campaign=Campaign(id="c9", name="Q2", stats={"calls": 12, "rate": 0.5}),
            attributes={"end_user": {"tags": ["promise", "later"], "score": 3}, "flag": True},
        ),
    )
    view = event_view(event, title="a title")
    assert view == {
        "id": "evt_0001",
        "source": "altur",
        "type": "call.ended",
        "time": "2026-06-08T18:00:00+00:00",
        "received_at": "2026-06-08T18:00:00+00:00",
        "provider": "altur",
        "provider_type": "call.ended",
        "idempotency_key": "key-evt_0001",
        "title": "a title",
        "contact.phone": "+521234567890",
        "contact.email": "s@example.com",
        "contact.name": "Sofía <!channel>",
        "contact.display": "Sofía <!channel> (+521234567890)",
        "call.id": "cll_1",
        "call.direction": "outbound",
        "call.status": "no_answer",
        "call.provider_status": "no-answer",
        "call.answered_by": "machine",
        "call.started_at": "2026-06-08T18:00:00+00:00",
        "call.duration_seconds": 45,
        "call.attempts": 2,
        "call.attempt_ids": "a1, a2",
        "call.transcript": "agent: Hola\ncontact: Sí",
        "campaign.id": "c9",
        "campaign.name": "Q2",
        "campaign.status": "unknown",
        "campaign.display": "Q2",
        "campaign.stats.calls": 12,
        "campaign.stats.rate": 0.5,
        "attributes.end_user.tags": "promise, later",
        "attributes.end_user.score": 3,
        "attributes.flag": "yes",
    }


def test_stalled_means_no_next_cycle_and_not_completed(make_event):
    def cycle(status, next_cycle_at=None, type="campaign.cycle_completed"):
        campaign = Campaign(name="Q2", status=status, cycle=2, next_cycle_at=next_cycle_at)
        return make_event(type, data=EventData(campaign=campaign))

    assert is_stalled(cycle(CampaignStatus.COOLDOWN))
    assert is_stalled(cycle(CampaignStatus.ACTIVE))
    assert not is_stalled(cycle(CampaignStatus.COMPLETED))
    assert not is_stalled(cycle(CampaignStatus.COOLDOWN, NEXT))
    assert not is_stalled(cycle(CampaignStatus.COOLDOWN, type="campaign.status_changed"))
    assert not is_stalled(make_event("campaign.cycle_completed"))


# -- templates -----------------------------------------------------------------------------


def test_template_renders_view_fields_and_leaves_missing_ones_empty(make_event):
    event = make_event(
        "call.ended",
        data=EventData(contact=CONTACT, call=Call(status=CallStatus.BUSY, duration_seconds=7)),
    )
    template = Template(
        "{type}: {contact.name} at {contact.phone} [{campaign.name}] "
        "{call.duration_seconds:>4}s {campaign.stats.calls:d} {{braces}}"
    )
    assert template.render(event_view(event)) == (
        "call.ended: Sofía &lt;!channel&gt; at +521234567890 []    7s  {braces}"
    )


def test_template_cannot_reach_past_the_view(make_event):
    event = make_event("call.ended", data=EventData(contact=CONTACT))
    view = event_view(event)
    assert Template("{type.__class__}|{contact.name.__class__}|{id.upper}").render(view) == "||"
    assert Template("{contact.name!r}").render(view) == "'Sofía &lt;!channel&gt;'"


def test_template_lookup_prefers_exact_then_first_glob():
    templates = TemplateSet.from_options(
        {"call.*": "A", "*": "B", "call.ended": "C", "campaign.stalled": "D"}
    )
    assert templates.find("call.ended") == Template("C")
    assert templates.find("call.attempts_exhausted") == Template("A")
    assert templates.find("campaign.completed") == Template("B")
    assert templates.find("campaign.cycle_completed", stalled=True) == Template("D")
    assert templates.find("campaign.cycle_completed") == Template("B")
    assert TemplateSet.from_options({"call.*": "A"}).find("pelcro.subscription.created") is None


def test_template_message_has_section_and_context(make_event):
    event = make_event(
        "campaign.completed",
        data=EventData(campaign=Campaign(name="Q2", status=CampaignStatus.FAILED)),
    )
    message = sink(templates={"campaign.*": "*{campaign.name}* is {campaign.status} — {title}"})
    rendered = message.message_for(event)
    text = "*Q2* is failed — :x: Campaign failed: Q2"
    assert rendered.text == text
    assert rendered.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"source `altur` · altur `campaign.completed` · {WHEN} · `evt_0001`",
                }
            ],
        },
    ]


def test_stalled_template_applies_only_to_stalled_cycles(make_event):
    instance = sink(
        templates={"campaign.stalled": "STALLED {campaign.name}", "campaign.*": "other {type}"}
    )
    stalled = make_event(
        "campaign.cycle_completed",
        data=EventData(campaign=Campaign(name="Q2", status=CampaignStatus.COOLDOWN)),
    )
    fine = make_event(
        "campaign.cycle_completed",
        data=EventData(
            campaign=Campaign(name="Q2", status=CampaignStatus.COOLDOWN, next_cycle_at=NEXT)
        ),
    )
    assert instance.message_for(stalled).text == "STALLED Q2"
    assert instance.message_for(fine).text == "other campaign.cycle_completed"


# -- default messages ----------------------------------------------------------------------


def test_campaign_completed_failed(make_event):
    event = make_event(
        "campaign.completed",
        source="exotel",
        provider="exotel",
        provider_type="campaign_status",
        data=EventData(
            campaign=Campaign(
                id="camp_1",
                name="Collections",
                status=CampaignStatus.FAILED,
                provider_status="Failed",
                report_url="https://example.com/report.csv?a=1&b=2",
                stats={"calls": 40},
            )
        ),
    )
    message = default_message(event)
    assert header(message) == ":x: Campaign failed: Collections"
    assert section(message)["text"] == {
        "type": "mrkdwn",
        "text": "The campaign ended with status *Failed*.",
    }
    assert fields(message) == [
        "*Status*\nFailed",
        "*Campaign id*\n`camp_1`",
        "*Stats*\ncalls: 40",
        "*Report*\n<https://example.com/report.csv?a=1&amp;b=2|Download report>",
    ]
    assert context(message) == (f"source `exotel` · exotel `campaign_status` · {WHEN} · `evt_0001`")
    assert message.text == (
        ":x: Campaign failed: Collections\nThe campaign ended with status *Failed*."
    )
    assert len(message.blocks) == 3


@pytest.mark.parametrize(
    ("status", "expected_header", "expected_body"),
    [
        (
            CampaignStatus.COMPLETED,
            ":white_check_mark: Campaign completed: Q2",
            "The campaign finished.",
        ),
        (
            CampaignStatus.CANCELED,
            ":no_entry_sign: Campaign canceled: Q2",
            "The campaign was canceled before it finished.",
        ),
    ],
)
def test_campaign_completed_other_outcomes(make_event, status, expected_header, expected_body):
    event = make_event(
        "campaign.completed", data=EventData(campaign=Campaign(name="Q2", status=status))
    )
    message = default_message(event)
    assert header(message) == expected_header
    assert section(message)["text"]["text"] == expected_body
    assert fields(message) == [f"*Status*\n{status.value}"]


def test_campaign_stalled(make_event):
    event = make_event(
        "campaign.cycle_completed",
        data=EventData(
            campaign=Campaign(
                id="1234", name="Q2 Reactivation", status=CampaignStatus.COOLDOWN, cycle=2
            )
        ),
    )
    message = default_message(event)
    assert header(message) == ":warning: Campaign stalled: Q2 Reactivation"
    assert section(message)["text"]["text"] == (
        "Cycle 2 completed and no next cycle is scheduled, but the campaign is *cooldown*, "
        "not completed. It will make no more calls until someone looks at it."
    )
    assert fields(message) == ["*Status*\ncooldown", "*Campaign id*\n`1234`", "*Cycle*\n2"]


def test_campaign_cycle_completed_with_next_cycle(make_event):
    event = make_event(
        "campaign.cycle_completed",
        data=EventData(
            campaign=Campaign(
                name="Q2", status=CampaignStatus.COOLDOWN, cycle=2, next_cycle_at=NEXT
            )
        ),
    )
    message = default_message(event)
    assert header(message) == ":repeat: Campaign cycle 2 completed: Q2"
    assert section(message)["text"]["text"] == f"Cycle 2 completed. Next cycle {NEXT_WHEN}."
    assert fields(message) == [
        "*Status*\ncooldown",
        "*Cycle*\n2",
        f"*Next cycle*\n{NEXT_WHEN}",
    ]


def test_last_cycle_of_a_completed_campaign_is_not_stalled(make_event):
    event = make_event(
        "campaign.cycle_completed",
        data=EventData(campaign=Campaign(name="Q2", status=CampaignStatus.COMPLETED, cycle=3)),
    )
    message = default_message(event)
    assert header(message) == ":repeat: Campaign cycle 3 completed: Q2"
    assert section(message)["text"]["text"] == (
        "Cycle 3 completed. No further cycles: the campaign is completed."
    )


def test_campaign_status_changed(make_event):
    event = make_event(
        "campaign.status_changed",
        data=EventData(
            campaign=Campaign(
                id="1234",
                name="Q2",
                status=CampaignStatus.PAUSED,
                previous_status=CampaignStatus.ACTIVE,
            )
        ),
    )
    message = default_message(event)
    assert header(message) == ":arrows_counterclockwise: Campaign paused: Q2"
    assert section(message)["text"]["text"] == "Status changed from *active* to *paused*."
    assert fields(message) == ["*Status*\npaused", "*Campaign id*\n`1234`"]


def test_campaign_status_changed_to_failed(make_event):
    event = make_event(
        "campaign.status_changed",
        data=EventData(campaign=Campaign(name="Q2", status=CampaignStatus.FAILED)),
    )
    message = default_message(event)
    assert header(message) == ":x: Campaign failed: Q2"
    assert section(message)["text"]["text"] == "Status is now *failed*."


def test_campaign_triggered(make_event):
    event = make_event(
        "campaign.triggered",
        source="pelcro",
        data=EventData(
            contact=Contact(email="ana@example.com", name="Ana"),
            campaign=Campaign(id="542", name="Winback", status=CampaignStatus.ACTIVE),
        ),
    )
    message = default_message(event)
    assert header(message) == ":mega: Campaign triggered: Winback"
    assert section(message)["text"]["text"] == "Triggered for *Ana (ana@example.com)*."
    assert fields(message) == [
        "*Name*\nAna",
        "*Email*\nana@example.com",
        "*Status*\nactive",
        "*Campaign id*\n`542`",
    ]


@pytest.mark.parametrize(
    ("status", "provider_status", "expected_header", "expected_body"),
    [
        (
            CallStatus.FAILED,
            "failed",
            ":x: Call failed: Sofía (+521234567890)",
            "The call to *Sofía (+521234567890)* ended without reaching them: *failed*.",
        ),
        (
            CallStatus.NO_ANSWER,
            "no-answer",
            ":telephone_receiver: Call no answer: Sofía (+521234567890)",
            "The call to *Sofía (+521234567890)* ended without reaching them: *no answer*.",
        ),
        (
            CallStatus.BUSY,
            "busy",
            ":no_entry: Call busy: Sofía (+521234567890)",
            "The call to *Sofía (+521234567890)* ended without reaching them: *busy*.",
        ),
        (
            CallStatus.COMPLETED,
            "completed",
            ":telephone_receiver: Call completed: Sofía (+521234567890)",
            "The call with *Sofía (+521234567890)* ended: *completed*.",
        ),
    ],
)
def test_call_ended(make_event, status, provider_status, expected_header, expected_body):
    event = make_event(
        "call.ended",
        data=EventData(
            contact=Contact(phone="+521234567890", name="Sofía"),
            call=Call(
                status=status,
                provider_status=provider_status,
                direction=CallDirection.OUTBOUND,
                duration_seconds=0,
                ended_at=T0,
                recording_url="https://api.altur.io/call/1/recording",
            ),
            campaign=Campaign(name="Q2"),
        ),
    )
    message = default_message(event)
    assert header(message) == expected_header
    assert section(message)["text"]["text"] == expected_body
    assert fields(message) == [
        "*Name*\nSofía",
        "*Phone*\n+521234567890",
        f"*Status*\n{provider_status}",
        "*Direction*\noutbound",
        "*Duration*\n0 s",
        f"*Ended*\n{WHEN}",
        "*Recording*\n<https://api.altur.io/call/1/recording|Listen>",
        "*Campaign*\nQ2",
    ]


def test_call_attempts_exhausted(make_event):
    event = make_event(
        "call.attempts_exhausted",
        source="exotel",
        data=EventData(
            contact=Contact(phone="+919876543210"),
            call=Call(status=CallStatus.BUSY, attempt_ids=("s1", "s2", "s3")),
        ),
    )
    message = default_message(event)
    assert header(message) == ":no_bell: Call attempts exhausted: +919876543210"
    assert section(message)["text"]["text"] == (
        "All 3 call attempts to *+919876543210* ended without success; the last one: *busy*."
    )
    assert fields(message) == ["*Phone*\n+919876543210", "*Status*\nbusy", "*Attempts*\n3"]


def test_generic_event(make_event):
    event = make_event(
        "pelcro.subscription.created",
        source="pelcro",
        data=EventData(attributes={"plan": "Gold <b>", "amount": 10, "nested": {"x": 1}}),
    )
    message = default_message(event)
    assert header(message) == ":bell: pelcro.subscription.created"
    assert section(message)["text"]["text"] == (
        "Event `pelcro.subscription.created` from source `pelcro`."
    )
    assert fields(message) == ["*plan*\nGold &lt;b&gt;", "*amount*\n10"]
    assert message.text == (
        ":bell: pelcro.subscription.created\n"
        "Event `pelcro.subscription.created` from source `pelcro`."
    )


def test_event_values_are_escaped_in_mrkdwn(make_event):
    event = make_event(
        "call.ended",
        data=EventData(
            contact=Contact(name="<!channel> & co"), call=Call(status=CallStatus.FAILED)
        ),
    )
    message = default_message(event)
    assert "<!channel>" not in message.text
    assert section(message)["text"]["text"] == (
        "The call to *&lt;!channel&gt; &amp; co* ended without reaching them: *failed*."
    )
    # a header is plain_text: Slack shows it literally and parses no mention there
    assert header(message) == ":x: Call failed: <!channel> & co"


def test_long_values_are_cut_to_slack_limits(make_event):
    event = make_event(
        "campaign.completed",
        data=EventData(campaign=Campaign(name="N" * 400, status=CampaignStatus.COMPLETED)),
    )
    message = default_message(event)
    assert len(header(message)) == 150
    assert header(message).endswith("…")


def test_digest_message(make_event):
    events = [
        make_event(
            "call.ended",
            id=f"evt_{i}",
            data=EventData(
                contact=Contact(phone=f"+5200{i}"), call=Call(status=CallStatus.NO_ANSWER)
            ),
        )
        for i in range(4)
    ] + [
        make_event(
            "campaign.completed",
            id="evt_c",
            data=EventData(campaign=Campaign(name="Q2", status=CampaignStatus.FAILED)),
        )
    ]
    message = digest_message(events, lines=3, window=60, threshold=2)
    assert message.text == ":bell: Digest: 5 events (4 call.ended, 1 campaign.completed)"
    assert message.blocks == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": ":bell: Digest: 5 events", "emoji": True},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*By type*\n• `call.ended` × 4\n• `campaign.completed` × 1",
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*First 3*\n"
                "• :telephone_receiver: Call no answer: +52000\n"
                "• :telephone_receiver: Call no answer: +52001\n"
                "• :telephone_receiver: Call no answer: +52002",
            },
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "…and 2 more. Folded into one message: more than 2 events "
                    "arrived within 1 min.",
                }
            ],
        },
    ]
