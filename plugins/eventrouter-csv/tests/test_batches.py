"""``deliver_batch``: many rows with one write and one fsync per file; a refused event fails alone."""

from __future__ import annotations

import eventrouter_csv.files
from eventrouter import PermanentError, RetryableError


async def test_a_batch_is_one_write_and_one_fsync_per_file(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed, monkeypatch
):
    fsyncs = []
    real_fsync = eventrouter_csv.files.os.fsync
    monkeypatch.setattr(
        eventrouter_csv.files.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))
    )
    sink = await make_sink(path="{source}/{date}.csv")
    assert sink.delivers_batches
    calls = [call_ended.evolve(id=f"evt_call_{n:03d}") for n in range(150)]
    campaigns = [campaign_completed.evolve(id=f"evt_camp_{n:03d}") for n in range(70)]
    assert await sink.deliver_batch([calls[0], campaigns[0]]) == {}  # the files are made
    fsyncs.clear()
    batches = sink.writer.batches

    refused = await sink.deliver_batch([*calls[1:], *campaigns[1:]])

    assert refused == {}
    assert sink.writer.batches == batches + 1
    assert len(fsyncs) == 2  # one per file
    root = tmp_path / "archive"
    altur = read_rows(root / "altur" / "2024-12-19.csv")
    exotel = read_rows(root / "exotel" / "2024-12-19.csv")
    # in the order given, each row as deliver writes it
    assert [row["event_id"] for row in altur] == [event.id for event in calls]
    assert [row["event_id"] for row in exotel] == [event.id for event in campaigns]
    single = await make_sink(path="{source}/{date}.csv", directory="single")
    await single.deliver(calls[0])
    assert read_rows(tmp_path / "single" / "altur" / "2024-12-19.csv") == altur[:1]


async def test_only_the_events_of_a_file_that_cannot_be_written_are_refused(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed
):
    sink = await make_sink(path="{source}/{date}.csv")
    root = tmp_path / "archive"
    (root / "exotel").write_text("a file where a directory should be")
    refused = await sink.deliver_batch([call_ended, campaign_completed])
    assert list(refused) == ["evt_campaign_completed"]
    error = refused["evt_campaign_completed"]
    assert isinstance(error, RetryableError)
    assert "cannot write 2024-12-19.csv" in error.message
    assert [row["event_id"] for row in read_rows(root / "altur" / "2024-12-19.csv")] == [
        "evt_call_ended"
    ]


async def test_an_event_whose_path_leads_outside_is_refused_for_good_alone(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed
):
    sink = await make_sink(path="{type}/{date}.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "archive" / "campaign.completed").symlink_to(elsewhere)
    refused = await sink.deliver_batch([call_ended, campaign_completed])
    assert list(refused) == ["evt_campaign_completed"]
    assert isinstance(refused["evt_campaign_completed"], PermanentError)
    assert "leads outside the archive directory" in refused["evt_campaign_completed"].message
    rows = read_rows(tmp_path / "archive" / "call.ended" / "2024-12-19.csv")
    assert [row["event_id"] for row in rows] == ["evt_call_ended"]
    assert list(elsewhere.iterdir()) == []


async def test_a_report_that_cannot_be_fetched_yet_holds_back_only_its_row(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed, unused_tcp_port
):
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    campaign = campaign_completed.data.campaign.__class__(
        id="camp_42",
        status=campaign_completed.data.campaign.status,
        report_url=f"http://127.0.0.1:{unused_tcp_port}/reports/camp_42.csv",  # nothing listens
    )
    unreachable = campaign_completed.evolve(
        data=campaign_completed.data.__class__(campaign=campaign)
    )
    refused = await sink.deliver_batch([call_ended, unreachable])
    assert list(refused) == ["evt_campaign_completed"]
    assert isinstance(refused["evt_campaign_completed"], RetryableError)
    assert "report download from 127.0.0.1 failed" in refused["evt_campaign_completed"].message
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["event_id"] == "evt_call_ended"
