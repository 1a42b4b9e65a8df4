"""eventrouter's operator events (a sink down, back, paused, dead letters) as Slack messages."""

from __future__ import annotations

from eventrouter import EventData
from eventrouter_slack.messages import default_message


def operator_event(make_event, type_: str, **attributes):
    data = EventData(
        attributes={"sink": "crm", "pending": 412, "inflight": 0, "dead": 3, **attributes}
    )
    return make_event(type_, data=data, source="eventrouter", provider="eventrouter")


def texts(message) -> tuple[str, str, list[str]]:
    header = message.blocks[0]["text"]["text"]
    section = message.blocks[1]
    return header, section["text"]["text"], [f["text"] for f in section.get("fields", [])]


def test_circuit_opened_says_nothing_is_lost_and_when_it_tries_again(make_event):
    event = operator_event(
        make_event,
        "eventrouter.sink.circuit_opened",
        reason="HTTP 503: <down>",
        failures=10,
        next_probe_at="2026-06-08T18:00:30+00:00",
    )
    header, body, facts = texts(default_message(event))
    assert header == ":rotating_light: Sink crm is down: deliveries on hold"
    assert body == (
        "After 10 failed attempts in a row, eventrouter stopped delivering to *crm*. Nothing is "
        "lost: new events keep arriving and wait. It tries a single delivery "
        "<!date^1780941630^{date_short_pretty} {time}|2026-06-08T18:00:30+00:00>, then less and "
        "less often."
    )
    assert facts == [
        "*Waiting*\n412",
        "*Dead letters*\n3",
        "*Last error*\n`HTTP 503: &lt;down&gt;`",
    ]


def test_circuit_closed_says_how_long_it_was_down(make_event):
    event = operator_event(
        make_event, "eventrouter.sink.circuit_closed", open_seconds=1830.2, last_error="timeout"
    )
    header, body, _ = texts(default_message(event))
    assert header == ":white_check_mark: Sink crm is back"
    assert body == (
        "A delivery to *crm* succeeded after 30 min on hold. The waiting events are being "
        "delivered, oldest first."
    )


def test_pause_and_resume(make_event):
    paused = operator_event(make_event, "eventrouter.sink.paused", reason="CRM upgrade")
    header, body, _ = texts(default_message(paused))
    assert header == ":double_vertical_bar: Sink crm paused"
    assert body == (
        "CRM upgrade. Events for *crm* are kept until someone runs `eventrouter sinks resume crm`."
    )
    header, _, facts = texts(
        default_message(operator_event(make_event, "eventrouter.sink.resumed"))
    )
    assert header == ":arrow_forward: Sink crm resumed"
    assert facts[0] == "*Waiting*\n412"


def test_dead_letters_are_one_message_with_the_commands_to_run(make_event):
    event = operator_event(
        make_event,
        "eventrouter.delivery.dead_lettered",
        dead_lettered=2,
        reason="HTTP 400: bad",
        reasons={"HTTP 400: bad": 2},
    )
    header, body, facts = texts(default_message(event))
    assert header == ":warning: 2 deliveries to crm dead-lettered"
    assert "`eventrouter dlq retry --sink crm`" in body
    assert facts == ["*Dead letters in all*\n3", "*Why*\n2 × `HTTP 400: bad`"]
