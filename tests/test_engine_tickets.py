"""The tickets engine: first replies and the SLA, solves, reopens, ratings, and the point-in-time
steps of open tickets, backlog (10 min here) and the oldest unanswered ticket."""

from __future__ import annotations

import itertools

from core_events import WALL_MS, at, finals, persist, restored, settings, ticket
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from shoppulse.streams.engines import TicketsEngine
from shoppulse.streams.partials import Progress
from shoppulse.streams.state_keys import TicketKey

_closers = itertools.count()


def engine() -> TicketsEngine:
    return TicketsEngine(0, settings(backlog_age_seconds=600.0))


def closer(seconds: float):
    """A rating of a ticket this partition never saw: moves the watermark, keeps no ticket state."""
    return ticket("csat_rated", seconds, ticket_id=f"unseen-{next(_closers)}", score=5)


def steps_of(messages) -> list[list]:
    return [step for m in messages if isinstance(m, Progress) and m.steps for step in m.steps]


def test_first_reply_time_and_sla_breach_by_priority():
    e = engine()
    result = e.process(
        [
            ticket("ticket_created", 0, "urgent", priority="urgent"),
            ticket("ticket_created", 0, "normal", channel="email"),
            ticket("ticket_created", 0, "private-first"),
            ticket("agent_replied", 10, "private-first", public=False),  # an internal note: no reply
            ticket("agent_replied", 20, "private-first"),
            ticket("agent_replied", 60, "normal"),  # 1 min, SLA 24 h
            ticket("agent_replied", 4000, "urgent"),  # 66 min 40 s, SLA 1 h: breached
            ticket("agent_replied", 4001, "urgent"),  # a second reply is no first reply
            closer(5000),
        ],
        WALL_MS,
    )
    assert result.first_response_seconds == [
        (20.0, "unknown", "normal"),
        (60.0, "email", "normal"),
        (4000.0, "unknown", "urgent"),
    ]
    windows = finals(e.take_outbox(), "support")
    assert (windows[0]["first_replies"], windows[0]["frt_sum_ms"], windows[0].get("sla_breaches")) == (1, 20_000, None)
    assert windows[60]["first_replies|channel"] == {"email": 1}
    late = windows[3960]
    assert (late["first_replies"], late["sla_breaches"]) == (1, 1)
    assert late["frt_sum_ms|priority"] == {"urgent": 4_000_000}


def test_solves_resolutions_and_one_touch_solves():
    e = engine()
    result = e.process(
        [
            ticket("ticket_created", 0, "one-touch"),
            ticket("agent_replied", 10, "one-touch"),
            ticket("ticket_solved", 30, "one-touch"),  # one reply: one touch, resolved in 30 s
            ticket("ticket_created", 0, "two-replies"),
            ticket("agent_replied", 5, "two-replies"),
            ticket("agent_replied", 6, "two-replies"),
            ticket("ticket_solved", 40, "two-replies"),  # resolved in 40 s
            ticket("ticket_solved", 45, "unseen"),  # a solve of a ticket created elsewhere: no resolution time
            closer(500),
        ],
        WALL_MS,
    )
    assert result.resolution_seconds == [30.0, 40.0]
    m = finals(e.take_outbox(), "support")[0]
    assert (m["solves"], m["one_touch_solves"], m["resolutions"], m["resolution_sum_ms"]) == (3, 1, 2, 70_000)
    assert m["tickets_created"] == 2


def test_csat_and_nps():
    e = engine()
    ratings = [("csat_rated", 5), ("csat_rated", 4), ("csat_rated", 3)]
    ratings += [("nps_rated", 10), ("nps_rated", 9), ("nps_rated", 7), ("nps_rated", 6)]
    e.process(
        [ticket(kind, i, f"r{i}", score=score) for i, (kind, score) in enumerate(ratings)] + [closer(500)], WALL_MS
    )
    m = finals(e.take_outbox(), "support")[0]
    assert (m["csat_good"], m["csat_bad"]) == (2, 1)
    assert (m["nps_responses"], m["nps_promoters"], m["nps_detractors"]) == (4, 2, 1)


def test_open_backlog_and_oldest_unanswered_steps():
    e = engine()
    # Each ticket's state at a window end E counts its events before E, so it changes at ts + 1.
    e.process(
        [
            ticket("ticket_created", 10, "A"),
            ticket("ticket_created", 20, "B"),
            ticket("agent_replied", 30, "A"),
            ticket("ticket_solved", 40, "B"),
            closer(70),  # through 60 s
        ],
        WALL_MS,
    )
    assert steps_of(e.take_outbox()) == [
        [1, 0, 0, None],  # from the start of time: nothing open
        [at(10) + 1, 1, 0, at(10)],
        [at(20) + 1, 2, 0, at(10)],
        [at(30) + 1, 2, 0, at(20)],  # A answered: B is the oldest unanswered
        [at(40) + 1, 1, 0, None],  # B solved
    ]
    e.process([ticket("ticket_reopened", 80, "B"), closer(140)], WALL_MS)  # through 130 s
    assert steps_of(e.take_outbox()) == [
        [at(60) + 1, 1, 0, None],
        [at(80) + 1, 2, 0, at(20)],  # B open again, still unanswered
    ]
    e.process([closer(700)], WALL_MS)  # through 690 s: both pass the 600 s backlog age
    assert steps_of(e.take_outbox()) == [
        [at(130) + 1, 2, 0, at(20)],
        [at(610) + 1, 2, 1, at(20)],  # A: created at 10 s
        [at(620) + 1, 2, 2, at(20)],  # B: created at 20 s
    ]


def test_solves_and_reopens_before_a_close_keep_only_the_last_and_restore_exactly():
    e, store = engine(), {}
    e.process(
        [
            ticket("ticket_created", 0),
            ticket("ticket_solved", 10),
            ticket("ticket_reopened", 20),
            ticket("ticket_solved", 30),
            ticket("ticket_reopened", 40),
            ticket("ticket_solved", 95),  # after the close below (through 90 s)
            closer(100),
        ],
        WALL_MS,
    )
    persist(e, store)
    assert e.tickets["t1"].history == [(at(40), "reopened"), (at(95), "solved")]
    copy = restored(e, store)
    assert copy.tickets == e.tickets
    outs = []
    for one in (e, copy):
        one.take_outbox()
        one.process([closer(200)], WALL_MS)  # through 190 s
        outs.append(one.take_outbox())
    assert steps_of(outs[0]) == steps_of(outs[1]) == [[at(90) + 1, 1, 0, at(0)], [at(95) + 1, 0, 0, None]]


def test_a_ticket_written_before_the_typed_records_restores():
    """Tables written when tickets were dicts (orjson) hold the same JSON: they restore as they are."""
    old = b'{"created":1000,"channel":"email","priority":"high","replies":2,"first_reply":1500,"history":[[1700,"solved"]]}'
    e = engine()
    e.restore([("t|T-1", old)])
    restored_ticket = e.tickets["T-1"]
    assert (restored_ticket.created, restored_ticket.channel, restored_ticket.priority) == (1000, "email", "high")
    assert (restored_ticket.replies, restored_ticket.first_reply, restored_ticket.history) == (
        2,
        1500,
        [(1700, "solved")],
    )
    assert e.dump_key(TicketKey("T-1")) == old


# ------------------------------------------------- steps against a recomputation from all events

BACKLOG_S = 300
KINDS = ("ticket_created", "agent_replied", "ticket_solved", "ticket_reopened")


def reference_state(events: list[tuple[str, int, str]], point: int) -> tuple[int, int, int | None]:
    """(open, in backlog, oldest unanswered creation) at `point` from every event so far, in
    arrival order: a ticket is open at P if created before P and its last solve or reopen (in
    arrival order) before P is not a solve; in the backlog if open and older than the backlog
    age at P; unanswered if open with no public reply before P."""
    tickets: dict[str, dict] = {}
    for kind, ts, ticket_id in events:
        if kind == "ticket_created":
            tickets[ticket_id] = {"created": ts, "reply": None, "changes": []}
        elif ticket_id in tickets:
            if kind == "agent_replied":
                tickets[ticket_id]["reply"] = tickets[ticket_id]["reply"] or ts
            else:
                tickets[ticket_id]["changes"].append((ts, kind))
    open_count = backlog = 0
    oldest = None
    for t in tickets.values():
        before = [kind for ts, kind in t["changes"] if ts < point]
        if t["created"] >= point or (before and before[-1] == "ticket_solved"):
            continue
        open_count += 1
        backlog += point - t["created"] > BACKLOG_S * 1000
        if t["reply"] is None or t["reply"] >= point:
            oldest = t["created"] if oldest is None else min(oldest, t["created"])
    return open_count, backlog, oldest


@st.composite
def ticket_timelines(draw):
    """Ticket events a few seconds to minutes apart, some up to 10 s (the grace) out of order,
    each a batch of its own, with restarts from the written state in between."""
    n = draw(st.integers(1, 40))
    clock, items = 0, []
    for _ in range(n):
        clock += draw(st.sampled_from([0, 1, 5, 10, 30, 90, 250, 300, 310, 400]))
        back = draw(st.integers(0, 10))
        items.append(
            (draw(st.sampled_from(KINDS)), max(0, clock - back), draw(st.sampled_from("abc")), draw(st.booleans()))
        )
    return items


@given(ticket_timelines())
@hsettings(max_examples=300, deadline=None)
def test_steps_equal_a_recomputation_from_all_events(timeline):
    e: TicketsEngine = TicketsEngine(0, settings(backlog_age_seconds=float(BACKLOG_S)))
    store: dict[str, bytes] = {}
    seen: list[tuple[str, int, str]] = []
    for kind, seconds, ticket_id, restart in [*timeline, ("csat_rated", timeline[-1][1] + 2000, "z", False)]:
        e.process([ticket(kind, seconds, ticket_id=ticket_id, score=5)], WALL_MS)
        if kind != "csat_rated":
            seen.append((kind, at(seconds), ticket_id))
        for message in e.take_outbox():
            if not isinstance(message, Progress) or message.steps is None:
                continue
            steps = message.steps
            assert steps and steps[0][0] == message.from_ms + 1
            probes = {message.from_ms + 1, message.through_ms}
            probes.update(ts + d for _, ts, _ in seen for d in (0, 1, 2, BACKLOG_S * 1000 + 1))
            for point in sorted(p for p in probes if message.from_ms < p <= message.through_ms):
                in_force = [step for step in steps if step[0] <= point][-1]
                assert tuple(in_force[1:]) == reference_state(seen, point), (point, steps)
        persist(e, store)
        if restart:
            e = restored(e, store)


def test_a_solved_ticket_is_forgotten_30_days_after_its_solve_and_a_reopened_one_is_kept():
    e = engine()
    day = 86_400
    e.process([ticket("ticket_created", 0, "T-1"), ticket("ticket_created", 0, "T-2")], WALL_MS)
    e.process([ticket("ticket_solved", 10, "T-1"), ticket("ticket_solved", 20, "T-2")], WALL_MS)
    e.process([ticket("ticket_reopened", 30, "T-2")], WALL_MS)
    e.process([closer(30 * day + 15)], WALL_MS)
    assert set(e.tickets) == {"T-1", "T-2"}, "progress through 30 d + 5 s: T-1's solve at 10 s is not old enough"
    e.process([closer(30 * day + 25)], WALL_MS)
    assert set(e.tickets) == {"T-2"}
    assert e.take_changes()["t|T-1"] is None, "the forgetting is written back"
