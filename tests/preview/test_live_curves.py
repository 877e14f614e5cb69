"""The live loss curves as a page receives them: through every thinning of the run's series, no kept
point is skipped and the newest always arrives; the page's status word is the run's ending."""

from __future__ import annotations

import pytest

from jaxstyle.preview import live as live_module
from jaxstyle.preview.live import LiveRun


def steps(points: list[dict]) -> list[int]:
    return [p["step"] for p in points]


@pytest.mark.parametrize("every", [1, 7])
def test_a_page_polling_with_since_gets_every_kept_point_through_thinnings(every):
    live = LiveRun("t", 10_000)
    held, since = [], 0
    for step in range(1, 4602):
        live.report(step, terms={"total": 1.0 / step})
        if step % every == 0 or step == 4601:
            state = live.state(since)
            held += state["curves"]
            since = state["points"]
            kept = steps(live.state(0)["curves"])
            assert set(kept) <= set(steps(held)), sorted(set(kept) - set(steps(held)))[:5]
            assert steps(held)[-1] == step  # the newest, always
    assert {2001, 3001, 4001} <= set(steps(held))  # the points reported as the series was thinned
    assert len(kept) <= live_module.MAX_POINTS and kept[-1] == 4601


@pytest.mark.parametrize("every", [1, 3])
def test_the_event_stream_resends_the_series_once_thinned_and_never_skips_a_kept_point(monkeypatch, every):
    monkeypatch.setattr(live_module, "MAX_POINTS", 16)
    live = LiveRun("t", 1000)
    page, last, sent, whole = [], None, 0, 0
    for step in range(1, 200):
        live.report(step, terms={"total": float(step)})
        if step % every:
            continue
        news = live.news(last)
        sent += 1
        whole += news["since"] == 0
        page = news["curves"] if news["since"] == 0 else page + news["curves"]  # the page's rule
        last = news
        kept = steps(live.state(0)["curves"])
        assert steps(page) == kept  # the page holds the run's series, thinned as it is
        assert live.news(last) is None  # nothing new: nothing sent
    assert whole > 10 and sent - whole > 10  # thinned many times, and points sent one chunk at a time too


def test_the_page_says_stopped_when_the_run_took_its_stop_request():
    live = LiveRun("t", 10)
    live.request("stop")
    assert live.take_stop()
    live.end("ended")  # batch and video close their page as "ended" whatever happened
    assert live.state()["status"] == "stopped" and live.news(None)["status"] == "stopped"
    for ending in ("done", "ended", "failed"):
        other = LiveRun("t", 10)
        other.end(ending)
        assert other.state()["status"] == ending
    asked = LiveRun("t", 10)
    asked.request("stop")  # asked, but the run ended before it took the request
    asked.end("done")
    assert asked.state()["status"] == "done"


def test_a_job_that_stops_for_the_page_and_closes_it_as_ended_shows_stopped(tmp_path):
    from jaxstyle.jobs.live import Page, StopRequested

    class Server:  # the page's server: only stopped here
        def stop(self):
            pass

    live = LiveRun("t", 10)
    page = Page(live, Server(), lambda message: None)
    assert live.request("stop") is None
    with pytest.raises(StopRequested):
        page.controls(5, None, tmp_path / "out.png")
    page.close("ended")  # the batch job's ``finally``
    assert live.state()["status"] == "stopped"
