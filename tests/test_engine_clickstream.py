"""The clickstream engine: sessions (10 min timeout here), traffic, funnels and first-seen visitors."""

from __future__ import annotations

from core_events import MINUTE, WALL_MS, at, click, finals, marks, persist, restored, settings

from shoppulse.streams.engines import ClickstreamEngine

TIMEOUT_S = 600


def engine() -> ClickstreamEngine:
    return ClickstreamEngine(0, settings())


def run(*batches) -> tuple[ClickstreamEngine, list]:
    e, out = engine(), []
    for batch in batches:
        e.process(list(batch), WALL_MS)
        out += e.take_outbox()
    return e, out


def end_all(e: ClickstreamEngine, out: list, seconds: float = 5000) -> None:
    """Another visitor's event far later: every session so far has timed out and its window closes."""
    e.process([click("page_view", seconds, visitor="late-visitor", session="z")], WALL_MS)
    out += e.take_outbox()


def test_a_session_starts_in_the_traffic_windows_of_its_first_event():
    e, out = run([click("page_view", 5), click("product_view", 20, product_id="p1"), click("promo_view", 30)])
    end_all(e, out)
    traffic = finals(out, "traffic")[0]
    assert (traffic["sessions"], traffic["page_views"], traffic["promo_views"]) == (1, 2, 1)
    assert traffic["sessions_by_device"] == {"unknown": 1} and traffic["sessions_by_source"] == {"(direct)": 1}
    assert traffic["new_visitor_sessions"] == 1
    assert traffic["visitors"].count() == 1


def test_a_session_ends_after_the_timeout_with_its_views_and_duration():
    e, out = run([click("page_view", 5), click("page_view", 20)])
    # The session's last event is at 20 s: it ends once the watermark is past 20 s + 600 s
    # (an event exactly 600 s later would still continue it).
    e.process([click("page_view", 20 + TIMEOUT_S, visitor="other", session="o")], WALL_MS)
    assert ("v1", "s1") in {(k.visitor_id, k.session_id) for k in e.sessions}
    e.process([click("page_view", 20 + TIMEOUT_S + 1, visitor="other", session="o2")], WALL_MS)
    assert ("v1", "s1") not in {(k.visitor_id, k.session_id) for k in e.sessions}
    out += e.take_outbox()
    end_all(e, out)
    sessions = finals(out, "sessions")[0]
    assert (sessions["ended_sessions"], sessions["session_views"], sessions["session_duration_ms"]) == (1, 2, 15_000)
    assert sessions["engaged_sessions"] == 1  # 15 s > 10 s


def test_a_gap_longer_than_the_timeout_splits_the_same_session_id_in_two():
    e, out = run([click("page_view", 0), click("page_view", TIMEOUT_S + 1)])
    end_all(e, out)
    assert finals(out, "traffic")[0]["sessions"] == 1
    assert finals(out, "traffic")[600]["sessions"] == 1
    assert finals(out, "sessions")[0]["ended_sessions"] == 1


def test_bounce_and_engaged_sessions():
    e, out = run(
        [
            click("page_view", 1, visitor="bounce", session="a"),  # one view, no time: a bounce
            click("page_view", 2, visitor="two-views", session="b"),
            click("page_view", 3, visitor="two-views", session="b"),  # two views: engaged
            click("page_view", 4, visitor="buyer", session="c"),
            click("purchase", 5, visitor="buyer", session="c"),  # one view and a purchase: engaged
        ]
    )
    end_all(e, out)
    sessions = finals(out, "sessions")[0]
    assert (sessions["ended_sessions"], sessions["engaged_sessions"], sessions["converted_sessions"]) == (3, 2, 1)


def test_cart_and_checkout_abandonment():
    e, out = run(
        [
            click("add_to_cart", 1, visitor="a", session="a"),  # cart, no purchase: abandoned
            click("add_to_cart", 2, visitor="b", session="b"),
            click("begin_checkout", 3, visitor="b", session="b"),
            click("purchase", 4, visitor="b", session="b"),  # cart and checkout, bought
            click("begin_checkout", 5, visitor="c", session="c"),  # checkout, no purchase: abandoned
        ]
    )
    end_all(e, out)
    s = finals(out, "sessions")[0]
    assert (s["cart_sessions"], s["abandoned_cart_sessions"]) == (2, 1)
    assert (s["checkout_sessions"], s["abandoned_checkout_sessions"]) == (2, 1)
    assert s["converted_sessions"] == 1


def test_session_windows_wait_for_the_oldest_open_session_but_traffic_does_not():
    # A's session starts at 5 s and stays alive (an event every 5 minutes); B's starts at 65 s and ends.
    keep_alive = [click("page_view", s, visitor="A", session="a") for s in (5, 305, 605, 905)]
    e, out = run(keep_alive[:1], [click("page_view", 65, visitor="B", session="b")], keep_alive[1:])
    assert e.watermark.value == at(905)
    assert e.family_progress("traffic") == at(895)
    assert e.family_progress("sessions") == at(0), "A's session, started in the first minute, is still open"
    assert not finals(out, "sessions"), "B ended at 665 s, but its window waits for A"
    end_all(e, out)
    sessions = finals(out, "sessions")
    assert sessions[0]["ended_sessions"] == 1 and sessions[60]["ended_sessions"] == 1
    assert marks(out, "traffic")[-1][1] > marks(out, "sessions")[0][1]


def test_a_window_held_by_an_open_session_does_not_close_on_every_event():
    # B's session ends and its sessions window waits for A's; then 300 events arrive in one
    # batch, 0.1 s apart, all in one minute window of traffic. The closing step runs when
    # a window ends and at the end of the batch, so the traffic progress moves a few times,
    # not once per event.
    keep_alive = [click("page_view", s, visitor="A", session="a") for s in (5, 605, 1205)]
    e, out = run(keep_alive[:1], [click("page_view", 65, visitor="B", session="b")], keep_alive[1:])
    assert e.family_progress("sessions") == at(0) and e.windows, "a sessions window is held"
    out.clear()
    e.process([click("page_view", 1230 + i / 10, visitor=f"C{i}", session="c") for i in range(300)], WALL_MS)
    out += e.take_outbox()
    assert 1 <= len(marks(out, "traffic")) <= 3


def test_asking_for_progress_ends_no_session_the_closing_step_does():
    e, _ = run([click("page_view", 5)])
    e.watermark.event_ms = at(5000)  # far past the session's timeout, with no closing step yet
    e.family_progress("sessions")
    assert len(e.sessions) == 1
    e.process([], WALL_MS)  # every batch ends with the closing step
    assert len(e.sessions) == 0


def test_a_visitor_is_new_only_at_first_sight_unless_the_event_says():
    e, out = run(
        [
            click("page_view", 1, visitor="v1", session="s1"),  # first sight: new
            click("page_view", 2, visitor="v1", session="s2"),  # seen: returning
            click("page_view", 3, visitor="v2", session="s3", is_new_visitor=False),  # the flag wins
            click("page_view", 4, visitor="v3", session="s4", is_new_visitor=True),
        ]
    )
    end_all(e, out)
    traffic = finals(out, "traffic")[0]
    assert (traffic["sessions"], traffic["new_visitor_sessions"]) == (4, 2)


def test_restore_keeps_open_sessions_and_seen_visitors():
    original, store = engine(), {}
    original.process([click("page_view", 5), click("add_to_cart", 20, product_id="p1")], WALL_MS)
    persist(original, store)
    copy = restored(original, store)
    assert copy.sessions == original.sessions and "v1" in copy.seen_visitors
    outs = []
    for one in (original, copy):
        one.take_outbox()
        # The same session goes on, then a new session of the now known visitor, then everything ends.
        one.process([click("purchase", 40), click("page_view", 100, session="s2")], WALL_MS)
        out = one.take_outbox()
        end_all(one, out)
        outs.append(out)
    for out in outs:
        assert finals(out, "sessions")[0]["converted_sessions"] == 1
        assert finals(out, "traffic")[60].get("new_visitor_sessions", 0) == 0
        assert finals(out, "traffic", 5 * MINUTE)[0]["sessions"] == 2
    assert [m.to_bytes() for m in outs[0]] == [m.to_bytes() for m in outs[1]]


def test_a_session_written_before_the_typed_records_restores():
    """Tables written when sessions were dicts (orjson) hold the same JSON: they restore as they are."""
    old = b'{"start":1000,"last":2000,"views":1,"cart":true,"checkout":false,"purchase":false,"product":"p1"}'
    e = engine()
    e.restore([("s|v1 s1", old), ("v|v1", b"1")])
    [(key, session)] = e.sessions.items()
    assert (key.visitor_id, key.session_id, session.start, session.last) == ("v1", "s1", 1000, 2000)
    assert (session.views, session.cart, session.product) == (1, True, "p1")
    assert "v1" in e.seen_visitors
    assert e.dump_key(key) == old
