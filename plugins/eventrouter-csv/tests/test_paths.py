"""The path template, sanitised placeholders, and the options check()."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from eventrouter import ConfigError
from eventrouter.testing import installed_types, parse_config, structure_options
from eventrouter_csv import CSVOptions, CSVSink
from eventrouter_csv.locking import LOCK_NAME
from eventrouter_csv.paths import PathTemplate, numbered_name, safe_name


def _problems(**options):
    options.setdefault("directory", "archive")
    return list(CSVSink("archive", structure_options(options, CSVOptions)).check())


async def test_placeholders_pick_the_file(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed
):
    sink = await make_sink(path="{source}/{type}/{date}.csv")
    await sink.deliver(call_ended)
    late = campaign_completed.evolve(received_at=datetime(2024, 12, 20, 0, 0, 1, tzinfo=UTC))
    await sink.deliver(late)
    archive = tmp_path / "archive"
    assert sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*.csv")) == [
        "altur/call.ended/2024-12-19.csv",
        "exotel/campaign.completed/2024-12-20.csv",
    ]
    (row,) = read_rows(archive / "exotel/campaign.completed/2024-12-20.csv")
    assert row["event_id"] == "evt_campaign_completed"


async def test_hostile_values_never_leave_the_directory(make_sink, tmp_path, call_ended):
    sink = await make_sink(path="{source}-{type}.csv")
    event = call_ended.evolve(source="../../etc", type="/passwd\x00 x")
    await sink.deliver(event)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in files) == [
        f"archive/{LOCK_NAME}",
        "archive/_.._.._etc-_passwd_x.csv",
    ]


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("call.ended", "call.ended"),
        ("../..", "_.._.."),
        ("..", "_.."),
        (".hidden", "_.hidden"),
        ("", "_"),
        ("a/b\\c d", "a_b_c_d"),
        ("Sofía", "Sof_a"),
    ],
)
def test_safe_name(value, name):
    assert safe_name(value) == name


def test_template_matches_what_it_renders():
    template = PathTemplate("{source}/{date}-{type}.csv")
    rendered = template.render(day=date(2024, 12, 19), event_type="call.ended", source="altur")
    assert rendered == "altur/2024-12-19-call.ended.csv"
    assert template.day_of(rendered) == date(2024, 12, 19)
    assert template.day_of(rendered + ".gz") == date(2024, 12, 19)
    assert template.day_of("altur/reports/evt_1-report.csv") is None
    assert template.day_of("altur/2024-13-45-call.ended.csv") is None


@pytest.mark.parametrize(
    ("template", "extension", "rendered", "continued"),
    [
        ("{date}.csv", ".csv", "2024-12-19.csv", "2024-12-19.2.csv"),
        ("{type}.csv", ".csv", "call.ended.csv", "call.ended.2.csv"),
        (
            "{source}/{date}-events.csv",
            ".csv",
            "altur/2024-12-19-events.csv",
            "altur/2024-12-19-events.2.csv",
        ),
        ("{date}/calls.tsv", ".tsv", "2024-12-19/calls.tsv", "2024-12-19/calls.2.tsv"),
        ("{date}", "", "2024-12-19", "2024-12-19.2"),
        ("{date}_archive", "", "2024-12-19_archive", "2024-12-19_archive.2"),
    ],
)
def test_continuation_files_are_numbered_before_the_extension(
    template, extension, rendered, continued
):
    path = PathTemplate(template)
    assert path.extension == extension
    assert path.render(day=date(2024, 12, 19), event_type="call.ended", source="altur") == rendered
    directory, _, name = rendered.rpartition("/")
    numbered = numbered_name(name, 2, extension)
    assert "/".join(filter(None, [directory, numbered])) == continued
    assert numbered_name(name, 1, extension) == name
    for relative in (rendered, continued):
        assert path.pattern().fullmatch(relative), relative
    if path.has_date:
        assert path.day_of(continued) == date(2024, 12, 19)
        assert path.day_of(continued + ".gz") == date(2024, 12, 19)
        assert path.day_of(numbered_name(rendered, 12, extension)) == date(2024, 12, 19)
        # only what numbered_name makes: no .1, no leading zero, no word
        for number in ("1", "02", "x"):
            assert (
                path.day_of(f"{rendered[: len(rendered) - len(extension)]}.{number}{extension}")
                is None
            )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("/var/{date}.csv", "must be a relative path"),
        ("../{date}.csv", "'..' segments"),
        ("{date}/../x.csv", "'..' segments"),
        ("a//{date}.csv", "empty"),
        ("{date}/", "empty"),
        ("", "must be a relative path"),
        ("{day}.csv", "unknown placeholder {day}"),
        ("{date:%Y}.csv", "takes no format"),
        ("{date!r}.csv", "takes no format"),
        ("{date.csv", "invalid template"),
    ],
)
def test_bad_templates_are_refused(template, message):
    problems = _problems(path=template)
    assert len(problems) == 1
    assert problems[0].startswith("path: ")
    assert message in problems[0]


def test_option_problems():
    assert _problems() == []
    assert _problems(columns=[]) == ["columns: list at least one column"]
    (unknown,) = _problems(columns=["event_id", "nope"])
    assert unknown.startswith("columns: unknown 'nope'; known: event_id, received_at")
    assert _problems(columns=["type", "type"]) == ["columns: listed twice: 'type'"]
    assert _problems(compress_after_days=0) == [
        "compress_after_days: must be at least 1 (leave it out to turn it off)"
    ]
    assert _problems(path="{source}.csv", retention_days=3) == [
        "path: compress_after_days and retention_days need {date} in the path"
    ]
    assert _problems(report_hosts=["https://x.example.com"]) == [
        "report_hosts: 'https://x.example.com' is not a host name (no scheme, port or path)"
    ]
    assert _problems(report_max_bytes=0) == ["report_max_bytes: must be positive"]
    assert _problems(directory=" ") == ['directory: required, e.g. directory = "archive"']


def test_config_errors_name_the_sink(tmp_path):
    document = {
        "sinks": {"archive": {"plugin": "csv", "directory": "a", "columns": ["raw"], "colums": []}},
        "routes": [{"sinks": ["archive"]}],
    }
    registry = installed_types()
    with pytest.raises(ConfigError) as caught:
        parse_config(document, registry, base_dir=tmp_path, environ={})
    text = "\n".join(caught.value.problems)
    assert "sinks.archive" in text
    assert "colums" in text
    document["sinks"]["archive"].pop("colums")
    with pytest.raises(ConfigError) as caught:
        parse_config(document, registry, base_dir=tmp_path, environ={})
    assert any(p.startswith("sinks.archive.columns: unknown 'raw'") for p in caught.value.problems)
