"""The tickets engine: support windows and ticket state (open, backlog, first reply, solves)."""

from __future__ import annotations

from typing import Literal

import msgspec

from ...settings import Settings
from ..cold import ColdStore
from ..events import Parsed, TicketEvent
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
        # Tickets with events since the last close or effective after it (see state_steps), and their latest ts.
        self.touched: set[str] = set()
        self.last_ts: dict[str, int] = {}

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event = parsed.event_as(TicketEvent)
        ts, etype = parsed.ts_ms, event.event_type
        ticket = self.tickets.get(event.ticket_id)
        windows = self.measures_for("support", ts)
        if etype == "ticket_created":
            ticket = self.tickets[event.ticket_id] = Ticket(
                created=ts, channel=event.channel or "unknown", priority=event.priority or "normal"
            )
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
            self.touched.add(event.ticket_id)
            self.last_ts[event.ticket_id] = max(ts, self.last_ts.get(event.ticket_id, ts))

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
        Tickets with no event since the last close and no backlog crossing in the interval
        are constant over it; only the touched ones are re-evaluated at each change point.
        Then what no later interval needs is dropped (see the end).
        """
        first = previous + 1
        touched = set(self.touched)
        for ticket_id, ticket in self.tickets.items():
            if first < ticket.created + self.backlog_ms + 1 <= through:
                touched.add(ticket_id)
        live = [self.tickets[t] for t in touched if t in self.tickets]
        points = {first}
        for ticket in live:
            crossing = [ticket.created, ticket.first_reply or ticket.created, *(ts for ts, _ in ticket.history)]
            points.update(ts + 1 for ts in crossing if first < ts + 1 <= through)
            if first < ticket.created + self.backlog_ms + 1 <= through:
                points.add(ticket.created + self.backlog_ms + 1)
        base_open = base_backlog = 0
        base_oldest = None
        for ticket_id, ticket in self.tickets.items():
            if ticket_id not in touched:
                is_open, in_backlog, unanswered = self._state_at(ticket, first)
                base_open += is_open
                base_backlog += in_backlog
                if unanswered is not None and (base_oldest is None or unanswered < base_oldest):
                    base_oldest = unanswered
        steps: list = []
        for point in sorted(points):
            open_count, backlog, oldest = base_open, base_backlog, base_oldest
            for ticket in live:
                is_open, in_backlog, unanswered = self._state_at(ticket, point)
                open_count += is_open
                backlog += in_backlog
                if unanswered is not None and (oldest is None or unanswered < oldest):
                    oldest = unanswered
            if not steps or steps[-1][1:] != [open_count, backlog, oldest]:
                steps.append([point, open_count, backlog, oldest])
        self._drop_superseded_history(touched, through)
        self.touched = {t for t in self.touched if self.last_ts.get(t, 0) + 1 > through}
        self.last_ts = {t: self.last_ts[t] for t in self.touched if t in self.last_ts}
        self._forget_old_tickets(through)
        return steps

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
        for ticket_id, ticket in list(self.tickets.items()):
            history = ticket.history
            if history and history[-1][1] == "solved" and history[-1][0] < through - self.retention_ms:
                del self.tickets[ticket_id]
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
        self.touched.add(key.ticket_id)
        self.last_ts[key.ticket_id] = max([ticket.created, ticket.first_reply or 0, *(ts for ts, _ in ticket.history)])
