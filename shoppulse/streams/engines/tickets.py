"""The tickets engine: support windows and ticket state (open, backlog, first reply, solves)."""

from __future__ import annotations

import heapq
from typing import Literal

import msgspec

from ...settings import Settings
from ..cold import ColdStore
from ..events import NO_CHANNEL, NO_PRIORITY, Parsed, TicketEvent
from ..measures import Measures
from ..state_keys import StateKey, TicketKey
from .base import BatchResult, PartitionEngine, encode_state

Change = Literal["solved", "reopened"]


class Ticket(msgspec.Struct):
    """One ticket: creation time, channel, priority, public replies, the first reply's time, and
    its solves and reopens as (ts, change) in arrival order (the order `_state_at` reads them)."""

    created: int
    channel: str
    priority: str
    replies: int = 0
    first_reply: int | None = None
    history: list[tuple[int, Change]] = []


_decode_ticket = msgspec.json.Decoder(Ticket).decode


class TicketsEngine(PartitionEngine):
    stream = "tickets"
    families = ("support",)

    def __init__(self, partition: int, settings: Settings, cold: ColdStore | None = None):
        super().__init__(partition, settings, cold)
        self.tickets: dict[str, Ticket] = {}
        self.sla_ms = {p: int(s * 1000) for p, s in settings.sla_first_reply_seconds.items()}
        self.backlog_ms = int(settings.backlog_age_seconds * 1000)
        self.retention_ms = 30 * 86_400_000  # solved tickets are kept this long for reopens
        # A close evaluates only the tickets with events since the last close (`news`) and those
        # whose state changes in the interval (`change_due`: ts + 1 of each event, and the entry
        # into the backlog); for every other ticket (they are kept 30 days) it uses `state`:
        # each one's (open, in backlog, unanswered since) at the start of the next interval,
        # with their sums. The oldest unanswered is a heap, checked against `state`.
        self.news: set[str] = set()
        self.change_due: list[tuple[int, str]] = []  # (time the ticket's state may change, ticket id)
        self.state: dict[str, tuple[int, int, int | None]] = {}
        self.open_total = self.backlog_total = 0
        self.unanswered: list[tuple[int, str]] = []  # (created, ticket id)
        self.forget_due: list[tuple[int, str]] = []  # (a solve's ts, ticket id): see _forget_old_tickets

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event = parsed.event_as(TicketEvent)
        ts, etype = parsed.ts_ms, event.event_type
        ticket = self.tickets.get(event.ticket_id)
        windows = self.measures_for("support", ts)
        if etype == "ticket_created":
            ticket = self.tickets[event.ticket_id] = Ticket(
                created=ts, channel=event.channel or NO_CHANNEL, priority=event.priority or NO_PRIORITY
            )
            heapq.heappush(self.change_due, (ts + self.backlog_ms + 1, event.ticket_id))
            for m in windows:
                m.inc("tickets_created")
                m.inc_label("tickets_by_channel", ticket.channel)
                m.inc_label("tickets_by_category", event.category or "unknown")
            if event.product_id:
                windows[-1].top_items("product_tickets").add(event.product_id)
        elif etype == "agent_replied" and ticket is not None and event.public is not False:
            ticket.replies += 1
            if ticket.first_reply is None:
                ticket.first_reply = ts
                self._first_reply(ticket, ts, windows, result)
        elif etype == "ticket_escalated":
            for m in windows:
                m.inc("escalations")
        elif etype == "ticket_solved":
            for m in windows:
                m.inc("solves")
                if ticket is not None and ticket.replies <= 1:
                    m.inc("one_touch_solves")
            if ticket is not None:
                ticket.history.append((ts, "solved"))
                heapq.heappush(self.forget_due, (ts, event.ticket_id))
                duration = ts - ticket.created
                result.resolution_seconds.append(duration / 1000)
                for m in windows:
                    m.inc("resolutions")
                    m.inc("resolution_sum_ms", duration)
                    m.quantiles("resolution").add(duration)
        elif etype == "ticket_reopened":
            for m in windows:
                m.inc("reopens")
            if ticket is not None:
                ticket.history.append((ts, "reopened"))
        elif etype == "csat_rated" and event.score is not None:  # parse rejects a rating without a score
            for m in windows:
                m.inc("csat_good" if event.score >= 4 else "csat_bad")
        elif etype == "nps_rated" and event.score is not None:
            for m in windows:
                m.inc("nps_responses")
                if event.score >= 9:
                    m.inc("nps_promoters")
                elif event.score <= 6:
                    m.inc("nps_detractors")
        if ticket is not None:
            self.changed.add(TicketKey(event.ticket_id))
            self.news.add(event.ticket_id)
            heapq.heappush(self.change_due, (ts + 1, event.ticket_id))

    def _first_reply(self, ticket: Ticket, ts: int, windows: list[Measures], result: BatchResult) -> None:
        frt = ts - ticket.created
        channel, priority = ticket.channel, ticket.priority
        breached = frt > self.sla_ms.get(priority, self.sla_ms["normal"])
        result.first_response_seconds.append((frt / 1000, channel, priority))
        for m in windows:
            m.inc("first_replies")
            m.inc("frt_sum_ms", frt)
            m.quantiles("frt").add(frt)
            for dim, label in (("channel", channel), ("priority", priority)):
                m.inc_label(f"frt_sum_ms|{dim}", label, frt)
                m.inc_label(f"first_replies|{dim}", label)
                m.quantiles(f"frt|{dim}={label}").add(frt)
            if breached:
                m.inc("sla_breaches")

    def state_steps(self, family: str, previous: int, through: int) -> list:
        """How open tickets, backlog and the oldest unanswered ticket changed over (previous, through].

        A ticket's state at a window end E counts its events with ts < E, so it can change at
        ts + 1 of any of its events, and it enters the backlog at created + backlog age + 1.
        Tickets with no event since the last close and no such change by through + 1 are
        constant over the interval: their sum is kept (`state`). The others ("touched") are
        evaluated at the interval's start, again at each of their own change points in it, and
        at through + 1 for the next interval.
        Then what no later interval needs is dropped (see the end).
        """
        first = previous + 1
        touched, self.news = self.news, set()
        due = self.change_due
        while due and due[0][0] <= through + 1:
            _, ticket_id = heapq.heappop(due)
            if ticket_id in self.tickets:
                touched.add(ticket_id)
        for ticket_id in touched:
            self._set_state(ticket_id, None)
        live = [(t, self.tickets[t]) for t in touched if t in self.tickets]
        # Each touched ticket's state at `first`, then changed only at its own change points.
        current = [self._state_at(ticket, first) for _, ticket in live]
        changes_at: dict[int, set[int]] = {}
        for index, (_, ticket) in enumerate(live):
            for point in self._change_points(ticket):
                if first < point <= through:
                    changes_at.setdefault(point, set()).add(index)
        open_count = self.open_total + sum(state[0] for state in current)
        backlog = self.backlog_total + sum(state[1] for state in current)
        unanswered = [(state[2], index) for index, state in enumerate(current) if state[2] is not None]
        heapq.heapify(unanswered)  # entries checked against `current`, as in _oldest_unanswered
        base_oldest = self._oldest_unanswered()

        def oldest() -> int | None:
            while unanswered and current[unanswered[0][1]][2] != unanswered[0][0]:
                heapq.heappop(unanswered)
            top = unanswered[0][0] if unanswered else None
            return top if base_oldest is None or (top is not None and top < base_oldest) else base_oldest

        steps: list = [[first, open_count, backlog, oldest()]]
        for point in sorted(changes_at):
            for index in changes_at[point]:
                old, state = current[index], self._state_at(live[index][1], point)
                if state != old:
                    open_count += state[0] - old[0]
                    backlog += state[1] - old[1]
                    current[index] = state
                    if state[2] is not None:
                        heapq.heappush(unanswered, (state[2], index))
            value = [open_count, backlog, oldest()]
            if steps[-1][1:] != value:
                steps.append([point, *value])
        for ticket_id, ticket in live:
            self._set_state(ticket_id, self._state_at(ticket, through + 1))
        self._drop_superseded_history(touched, through)
        self._forget_old_tickets(through)
        return steps

    def _change_points(self, ticket: Ticket) -> list[int]:
        """Where the ticket's state may change: ts + 1 of each of its events, and its entry into the backlog."""
        events = [ticket.created, ticket.first_reply or ticket.created, *(ts for ts, _ in ticket.history)]
        return [*(ts + 1 for ts in events), ticket.created + self.backlog_ms + 1]

    def _set_state(self, ticket_id: str, state: tuple[int, int, int | None] | None) -> None:
        """Replace a ticket's part of the kept sums (None: take it out)."""
        old = self.state.pop(ticket_id, None)
        if old is not None:
            self.open_total -= old[0]
            self.backlog_total -= old[1]
        if state is not None:
            self.state[ticket_id] = state
            self.open_total += state[0]
            self.backlog_total += state[1]
            if state[2] is not None and state[2] != (old[2] if old is not None else None):
                heapq.heappush(self.unanswered, (state[2], ticket_id))

    def _oldest_unanswered(self) -> int | None:
        """The earliest creation time of the kept tickets that are open and unanswered."""
        heap, state = self.unanswered, self.state
        if len(heap) > 2 * len(state) + 64:  # entries of tickets answered or touched since
            heap[:] = [(s[2], t) for t, s in state.items() if s[2] is not None]
            heapq.heapify(heap)
        while heap:
            created, ticket_id = heap[0]
            kept = state.get(ticket_id)
            if kept is not None and kept[2] == created:
                return created
            heapq.heappop(heap)
        return None

    def _drop_superseded_history(self, touched: set[str], through: int) -> None:
        """Keep, of a ticket's solves and reopens at or before `through`, only the last one:
        every later window end counts them all and `_state_at` takes the last, so the others
        can never matter again, and a ticket's state value stays bounded however often it reopens."""
        for ticket_id in touched:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                continue
            passed = [i for i, (ts, _) in enumerate(ticket.history) if ts <= through]
            if len(passed) > 1:
                superseded = set(passed[:-1])
                ticket.history = [change for i, change in enumerate(ticket.history) if i not in superseded]
                self.changed.add(TicketKey(ticket_id))

    def _state_at(self, ticket: Ticket, end: int) -> tuple[int, int, int | None]:
        """(open, in backlog, created-at if open and unanswered) of one ticket at `end`."""
        created = ticket.created
        if created >= end:
            return 0, 0, None
        state = "open"
        for ts, change in ticket.history:
            if ts < end:
                state = "open" if change == "reopened" else "solved"
        if state != "open":
            return 0, 0, None
        replied = ticket.first_reply is not None and ticket.first_reply < end
        return 1, int(end - created > self.backlog_ms), None if replied else created

    def _forget_old_tickets(self, through: int) -> None:
        """Drop tickets whose last change (in arrival order) is a solve older than the retention."""
        due = self.forget_due
        while due and due[0][0] < through - self.retention_ms:
            solved, ticket_id = heapq.heappop(due)
            ticket = self.tickets.get(ticket_id)
            if ticket is not None and ticket.history and ticket.history[-1] == (solved, "solved"):
                del self.tickets[ticket_id]
                self._set_state(ticket_id, None)
                self.changed.add(TicketKey(ticket_id))

    def dump_entity(self, key: StateKey) -> bytes | None:
        if not isinstance(key, TicketKey):
            raise KeyError(key)
        ticket = self.tickets.get(key.ticket_id)
        return encode_state(ticket) if ticket is not None else None

    def restore_entity(self, key: StateKey, value: bytes) -> None:
        if not isinstance(key, TicketKey):
            raise KeyError(key)
        ticket = self.tickets[key.ticket_id] = _decode_ticket(value)
        # Which tickets changed since the last close was not persisted: re-evaluate each once.
        self.news.add(key.ticket_id)
        for point in self._change_points(ticket):
            heapq.heappush(self.change_due, (point, key.ticket_id))
        if ticket.history and ticket.history[-1][1] == "solved":
            heapq.heappush(self.forget_due, (ticket.history[-1][0], key.ticket_id))
