"""Per-partition window engines: the pure core that turns a partition's events into partials.

One `PartitionEngine` owns one partition of one source topic. It keeps:
- the partition's watermark;
- the dedup horizon (event ids seen recently);
- the open windows' `Measures`, per family and window size;
- entity state: open sessions, first-seen visitors and customers, tickets.

It emits two kinds of messages for the merge stage (see merge.py):
- `Snapshot`: the full current `Measures` of one window on this partition (idempotent:
  a later snapshot replaces an earlier one);
- `Progress`: "every window of this family that ends at or before `through_ms` is final
  on this partition".

State is kept as Python objects and written back in bulk: `take_changes()` returns the
keys changed since the last call, serialised, for the agent to write to its changelogged
Faust table once per batch rather than once per event.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Iterable

import orjson

from .events import ClickEvent, InvalidEvent, OrderEvent, Parsed, TicketEvent
from .measures import Measures, to_micros
from .settings import Settings
from .windows import Watermark, window_start

NEVER = 1 << 62


@dataclass(slots=True)
class Snapshot:
    family: str
    size_ms: int
    start_ms: int
    partition: int
    measures: Measures

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"type": "snapshot", "family": self.family, "size_ms": self.size_ms, "start_ms": self.start_ms,
             "partition": self.partition, "measures": self.measures.dump()}
        )  # fmt: skip


@dataclass(slots=True)
class Progress:
    family: str
    partition: int
    through_ms: int
    from_ms: int = 0  # the previous `through_ms`: `steps` cover (from_ms, through_ms]
    # Point-in-time state (support: open tickets...) as steps [t, open, backlog, oldest
    # unanswered created-at or None], each valid from window end t until the next step, so the
    # merge stage can take it at the end of any window, with or without events on this partition.
    steps: list | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps({"type": "progress", "family": self.family, "partition": self.partition,
                             "through_ms": self.through_ms, "from_ms": self.from_ms, "steps": self.steps})  # fmt: skip


def decode_partial(data: bytes) -> Snapshot | Progress:
    record = orjson.loads(data)
    if record["type"] == "progress":
        return Progress(record["family"], record["partition"], record["through_ms"], record.get("from_ms", 0),
                        record.get("steps"))  # fmt: skip
    return Snapshot(record["family"], record["size_ms"], record["start_ms"], record["partition"], Measures.load(record["measures"]))


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    late: list[tuple[Parsed, int]] = field(default_factory=list)  # (event, index in the batch)
    first_response_seconds: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, channel, priority)
    resolution_seconds: list[float] = field(default_factory=list)


class PartitionEngine:
    """Shared mechanics: watermark, dedup, windows, snapshots and progress."""

    stream = ""
    families: tuple[str, ...] = ()

    def __init__(self, partition: int, settings: Settings):
        self.partition = partition
        self.settings = settings
        self.sizes = tuple(s * 1000 for s in sorted(settings.windows_seconds))
        self.smallest = self.sizes[0]
        self.grace_ms = int(settings.grace_seconds * 1000)
        self.watermark = Watermark(int(settings.idle_timeout_seconds * 1000))
        self.horizon_ms = int(settings.dedup_horizon_seconds * 1000)
        self.windows: dict[tuple[str, int, int], Measures] = {}
        self.dirty_windows: set[tuple[str, int, int]] = set()  # changed since the last snapshot
        self.progress: dict[str, int] = {f: 0 for f in self.families}
        self.sent_progress: dict[str, int] = {}
        # dedup: event_id -> ts, plus per-batch groups so expiry writes one key per batch
        self.seen_ids: dict[str, int] = {}
        self.id_groups: dict[int, tuple[int, list[str]]] = {}  # group no -> (max ts, ids)
        self.next_group = 0
        self.changed: set[str] = set()  # state keys to write back
        self.outbox: list[Snapshot | Progress] = []
        self.next_close = NEVER  # end of the oldest open window: closing is checked against it

    # ------------------------------------------------------------ processing

    def process(self, batch: list[Parsed], wall_ms: int | None = None) -> BatchResult:
        """Apply one batch of parsed events in arrival order."""
        wall_ms = int(time.time() * 1000) if wall_ms is None else wall_ms
        result = BatchResult()
        new_ids: list[str] = []
        group_max = 0
        wm = self.watermark
        for index, parsed in enumerate(batch):
            event_id = parsed.event.event_id
            if event_id in self.seen_ids:
                result.duplicates += 1
                continue
            self.seen_ids[event_id] = parsed.ts_ms
            new_ids.append(event_id)
            group_max = max(group_max, parsed.ts_ms)
            if window_start(parsed.ts_ms, self.smallest) + self.smallest + self.grace_ms <= wm.value:
                result.late.append((parsed, index))
                continue
            wm.observe(parsed.ts_ms, wall_ms)
            self.on_event(parsed, result)
            result.accepted += 1
            if wm.value - self.grace_ms >= self.next_close:
                self._close()
        if batch:
            wm.last_arrival_wall_ms = wall_ms
        if new_ids:
            self.id_groups[self.next_group] = (group_max, new_ids)
            self.changed.add(f"ids|{self.next_group}")
            self.next_group += 1
        self.changed.add("meta")
        self._close()
        return result

    def tick(self, wall_ms: int | None = None, behind: bool = False) -> None:
        """Called every second: idle watermark advance (`behind`: records of this partition wait unread)."""
        wall_ms = int(time.time() * 1000) if wall_ms is None else wall_ms
        if self.watermark.idle_advance(wall_ms, behind):
            self._close()

    def take_outbox(self, snapshots_of_open: bool) -> list[Snapshot | Progress]:
        """Messages for the merge stage. With `snapshots_of_open`, include snapshots of open
        windows changed since the last call (the once-per-second non-final updates)."""
        if snapshots_of_open:
            for key in self.dirty_windows:
                measures = self.windows.get(key)
                if measures is not None:
                    self.outbox.append(Snapshot(*key, self.partition, measures))
            self.dirty_windows.clear()
        out, self.outbox = self.outbox, []
        return out

    # ----------------------------------------------------------- windows

    def measures_for(self, family: str, ts_ms: int) -> list[Measures]:
        """The open windows of every size that contain `ts_ms` (smallest first), marked changed."""
        out = []
        for size in self.sizes:
            key = (family, size, ts_ms - ts_ms % size)
            measures = self.windows.get(key)
            if measures is None:
                measures = self.windows[key] = Measures()
                self.next_close = min(self.next_close, key[2] + size)
            self.dirty_windows.add(key)
            self.changed.add(_window_key(key))
            out.append(measures)
        return out

    def family_progress(self, family: str) -> int:
        """Windows of `family` ending at or before this are final on this partition."""
        return self.watermark.value - self.grace_ms

    def _close(self) -> None:
        for family in self.families:
            through = self.family_progress(family)
            if through <= self.progress.get(family, 0):
                continue
            previous = self.progress.get(family, 0)
            steps = self.state_steps(family, previous, through)
            for key in [k for k in self.windows if k[0] == family and k[2] + k[1] <= through]:
                self.outbox.append(Snapshot(*key, self.partition, self.windows.pop(key)))
                self.dirty_windows.discard(key)
                self.changed.add(_window_key(key))
            self.progress[family] = through
            self.outbox.append(Progress(family, self.partition, through, previous, steps))
        self.next_close = min((start + size for _, size, start in self.windows), default=NEVER)
        self._expire_ids()

    def state_steps(self, family: str, previous: int, through: int) -> list | None:
        """Hook: point-in-time state over (previous, through] for the Progress message."""
        return None

    def _expire_ids(self) -> None:
        cutoff = self.watermark.value - self.horizon_ms
        for group, (max_ts, ids) in list(self.id_groups.items()):
            if max_ts < cutoff:
                for event_id in ids:
                    self.seen_ids.pop(event_id, None)
                del self.id_groups[group]
                self.changed.add(f"ids|{group}")

    # ----------------------------------------------------------- persistence

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        raise NotImplementedError

    def take_changes(self) -> dict[str, bytes | None]:
        """Changed state keys since the last call, serialised (None = deleted)."""
        changes: dict[str, bytes | None] = {}
        for key in self.changed:
            changes[key] = self.dump_key(key)
        self.changed.clear()
        return changes

    def dump_key(self, key: str) -> bytes | None:
        kind, _, rest = key.partition("|")
        if kind == "meta":
            return orjson.dumps({"wm": self.watermark.event_ms, "progress": self.progress, "next_group": self.next_group})
        if kind == "w":
            family, size, start = rest.split("|")
            measures = self.windows.get((family, int(size), int(start)))
            return orjson.dumps(measures.dump()) if measures is not None else None
        if kind == "ids":
            group = self.id_groups.get(int(rest))
            return orjson.dumps(group) if group is not None else None
        return self.dump_entity(kind, rest)

    def dump_entity(self, kind: str, rest: str) -> bytes | None:
        raise KeyError(kind)

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild in-memory state from the changelogged table after a (re)start or rebalance."""
        for key, value in items:
            kind, _, rest = key.partition("|")
            data = orjson.loads(value)
            if kind == "meta":
                self.watermark.event_ms = data["wm"]
                self.progress.update(data["progress"])
                self.next_group = data["next_group"]
            elif kind == "w":
                family, size, start = rest.split("|")
                self.windows[(family, int(size), int(start))] = Measures.load(data)
            elif kind == "ids":
                max_ts, ids = data
                self.id_groups[int(rest)] = (max_ts, ids)
                for event_id in ids:
                    self.seen_ids[event_id] = max_ts
            else:
                self.restore_entity(kind, rest, data)
        self.next_close = min((start + size for _, size, start in self.windows), default=NEVER)

    def restore_entity(self, kind: str, rest: str, data) -> None:
        raise KeyError(kind)


def _window_key(key: tuple[str, int, int]) -> str:
    return f"w|{key[0]}|{key[1]}|{key[2]}"


# ================================================================ clickstream

VIEW_TYPES = frozenset(("page_view", "product_view"))
COUNTED_TYPES = {
    "promo_view": "promo_views", "promo_click": "promo_clicks", "email_open": "email_opens",
    "email_click": "email_clicks", "newsletter_signup": "newsletter_signups", "sms_signup": "sms_signups",
    "unsubscribe": "unsubscribes", "chat_start": "chats_started", "search": "searches",
    "review_submitted": "reviews_submitted",
}  # fmt: skip
ENGAGED_MS = 10_000


class ClickstreamEngine(PartitionEngine):
    stream = "clickstream"
    families = ("traffic", "sessions")

    def __init__(self, partition: int, settings: Settings):
        super().__init__(partition, settings)
        self.session_timeout_ms = int(settings.session_timeout_seconds * 1000)
        # "<visitor_id> <session_id>" -> open session: a session id reused by two visitors is two sessions
        self.sessions: dict[str, dict] = {}
        self.expiry: list[tuple[int, str]] = []  # heap of (last ts + timeout, session key), lazily invalidated
        self.seen_visitors: set[str] = set()
        self.largest = self.sizes[-1]
        # Open sessions per 1-minute window of their start: the oldest start bounds progress,
        # and there are far fewer windows than sessions to scan.
        self.open_by_window: dict[int, int] = {}

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event: ClickEvent = parsed.event  # type: ignore[assignment]
        ts = parsed.ts_ms
        session_key = f"{event.visitor_id} {event.session_id}"
        session = self.sessions.get(session_key)
        if session is not None and ts - session["last"] > self.session_timeout_ms:
            self._end_session(session_key)
            session = None
        traffic = self.measures_for("traffic", ts)
        if session is None:
            session = self._start_session(event, session_key, ts, traffic)
        etype = event.event_type
        for m in traffic:
            m.distinct("visitors").add(event.visitor_id)
        if etype in VIEW_TYPES:
            session["views"] += 1
            for m in traffic:
                m.inc("page_views")
            if etype == "product_view" and event.product_id:
                previous = session["product"]
                if previous and previous != event.product_id:
                    # Insight lists are for the largest window only.
                    traffic[-1].top_items("view_pairs").add(f"{previous}>{event.product_id}")
                session["product"] = event.product_id
        elif etype in COUNTED_TYPES:
            for m in traffic:
                m.inc(COUNTED_TYPES[etype])
        elif etype == "add_to_cart":
            session["cart"] = True
        elif etype == "begin_checkout":
            session["checkout"] = True
        elif etype == "purchase":
            session["purchase"] = True
        if ts > session["last"]:
            session["last"] = ts
            heapq.heappush(self.expiry, (ts + self.session_timeout_ms, session_key))
        self.changed.add(f"s|{session_key}")

    def _start_session(self, event: ClickEvent, session_key: str, ts: int, traffic: list[Measures]) -> dict:
        if event.is_new_visitor is not None:
            new = event.is_new_visitor
        else:
            new = event.visitor_id not in self.seen_visitors
        if event.visitor_id not in self.seen_visitors:
            self.seen_visitors.add(event.visitor_id)
            self.changed.add(f"v|{event.visitor_id}")
        for m in traffic:
            m.inc("sessions")
            m.inc_label("sessions_by_device", event.device or "unknown")
            m.inc_label("sessions_by_source", event.source or "(direct)")
            if new:
                m.inc("new_visitor_sessions")
        session = {"start": ts, "last": ts, "views": 0, "cart": False, "checkout": False, "purchase": False, "product": None}
        self._track(session_key, session)
        return session

    def _track(self, session_key: str, session: dict) -> None:
        self.sessions[session_key] = session
        start_window = window_start(session["start"], self.smallest)
        self.open_by_window[start_window] = self.open_by_window.get(start_window, 0) + 1
        heapq.heappush(self.expiry, (session["last"] + self.session_timeout_ms, session_key))

    def _end_session(self, session_key: str) -> None:
        session = self.sessions.pop(session_key)
        start_window = window_start(session["start"], self.smallest)
        if self.open_by_window[start_window] == 1:
            del self.open_by_window[start_window]
        else:
            self.open_by_window[start_window] -= 1
        self.changed.add(f"s|{session_key}")
        duration = session["last"] - session["start"]
        engaged = duration > ENGAGED_MS or session["views"] >= 2 or session["purchase"]
        for m in self.measures_for("sessions", session["start"]):
            m.inc("ended_sessions")
            m.inc("session_views", session["views"])
            m.inc("session_duration_ms", duration)
            if engaged:
                m.inc("engaged_sessions")
            if session["purchase"]:
                m.inc("converted_sessions")
            if session["cart"]:
                m.inc("cart_sessions")
                if not session["purchase"]:
                    m.inc("abandoned_cart_sessions")
            if session["checkout"]:
                m.inc("checkout_sessions")
                if not session["purchase"]:
                    m.inc("abandoned_checkout_sessions")

    def _end_expired_sessions(self) -> None:
        wm = self.watermark.value
        while self.expiry and self.expiry[0][0] <= wm:
            due, session_key = heapq.heappop(self.expiry)
            session = self.sessions.get(session_key)
            if session is not None and session["last"] + self.session_timeout_ms == due:
                self._end_session(session_key)

    def family_progress(self, family: str) -> int:
        through = self.watermark.value - self.grace_ms
        if family == "sessions":
            self._end_expired_sessions()
            if self.open_by_window:
                # A window is final only once every session that started in it has ended.
                through = min(through, min(self.open_by_window))
        return through

    def dump_entity(self, kind: str, rest: str) -> bytes | None:
        if kind == "s":
            session = self.sessions.get(rest)
            return orjson.dumps(session) if session is not None else None
        if kind == "v":
            return b"1"
        raise KeyError(kind)

    def restore_entity(self, kind: str, rest: str, data) -> None:
        if kind == "s":
            self._track(rest, data)
        elif kind == "v":
            self.seen_visitors.add(rest)


# ===================================================================== orders


class OrdersEngine(PartitionEngine):
    stream = "orders"
    families = ("sales",)

    def __init__(self, partition: int, settings: Settings):
        super().__init__(partition, settings)
        self.seen_customers: set[str] = set()

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event: OrderEvent = parsed.event  # type: ignore[assignment]
        windows = self.measures_for("sales", parsed.ts_ms)
        currency = event.currency or "unknown"
        if event.event_type == "order_placed":
            self._placed(event, currency, windows)
        elif event.event_type == "order_cancelled":
            for m in windows:
                m.inc("cancellations")
        else:
            amount = event.refund_amount
            if amount is None:
                amount = sum(i.quantity * i.unit_price for i in event.items)
            for m in windows:
                m.inc("refunds")
                m.inc_label("refund_micros", currency, to_micros(amount))

    def _placed(self, event: OrderEvent, currency: str, windows: list[Measures]) -> None:
        revenue = to_micros(sum(i.quantity * i.unit_price for i in event.items) - event.discount)
        units = sum(i.quantity for i in event.items)
        costed = bool(event.items) and all(i.unit_cost is not None for i in event.items)
        customer = event.customer_id
        if event.is_first_order is not None:
            first = event.is_first_order
        else:
            first = customer is not None and customer not in self.seen_customers
        if customer is not None and customer not in self.seen_customers:
            self.seen_customers.add(customer)
            self.changed.add(f"c|{customer}")
        products = sorted({i.product_id for i in event.items})
        for m in windows:
            m.inc("orders")
            m.inc("units", units)
            m.inc_label("orders_by_currency", currency)
            m.inc_label("revenue_micros", currency, revenue)
            if costed:
                cost = to_micros(sum(i.quantity * i.unit_cost for i in event.items))  # type: ignore[operator]
                m.inc_label("costed_revenue_micros", currency, revenue)
                m.inc_label("cost_micros", currency, cost)
                m.inc_label("profit_micros", currency, revenue - cost)
            if customer is not None:
                m.inc("new_customer_orders" if first else "returning_customer_orders")
        top = windows[-1]  # insight lists: the largest window only
        for item in event.items:
            top.top_items("product_revenue_micros").add(item.product_id, to_micros(item.quantity * item.unit_price))
            top.top_items("product_units").add(item.product_id, item.quantity)
        pairs = top.top_items("product_pairs")
        for i, a in enumerate(products):
            for b in products[i + 1 :]:
                pairs.add(f"{a}+{b}")

    def dump_entity(self, kind: str, rest: str) -> bytes | None:
        if kind == "c":
            return b"1"
        raise KeyError(kind)

    def restore_entity(self, kind: str, rest: str, data) -> None:
        if kind == "c":
            self.seen_customers.add(rest)


# ==================================================================== tickets


class TicketsEngine(PartitionEngine):
    stream = "tickets"
    families = ("support",)

    def __init__(self, partition: int, settings: Settings):
        super().__init__(partition, settings)
        self.tickets: dict[str, dict] = {}
        self.sla_ms = {p: int(s * 1000) for p, s in settings.sla_first_reply_seconds.items()}
        self.backlog_ms = int(settings.backlog_age_seconds * 1000)
        self.retention_ms = 30 * 86_400_000  # solved tickets are kept this long for reopens
        # Tickets with events since the last close or effective after it (see state_steps), and their latest ts.
        self.touched: set[str] = set()
        self.last_ts: dict[str, int] = {}

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event: TicketEvent = parsed.event  # type: ignore[assignment]
        ts, etype = parsed.ts_ms, event.event_type
        ticket = self.tickets.get(event.ticket_id)
        windows = self.measures_for("support", ts)
        if etype == "ticket_created":
            ticket = self.tickets[event.ticket_id] = {
                "created": ts, "channel": event.channel or "unknown", "priority": event.priority or "normal",
                "replies": 0, "first_reply": None, "history": [],
            }  # fmt: skip
            for m in windows:
                m.inc("tickets_created")
                m.inc_label("tickets_by_channel", ticket["channel"])
                m.inc_label("tickets_by_category", event.category or "unknown")
            if event.product_id:
                windows[-1].top_items("product_tickets").add(event.product_id)
        elif etype == "agent_replied" and ticket is not None and event.public is not False:
            ticket["replies"] += 1
            if ticket["first_reply"] is None:
                ticket["first_reply"] = ts
                self._first_reply(ticket, ts, windows, result)
        elif etype == "ticket_escalated":
            for m in windows:
                m.inc("escalations")
        elif etype == "ticket_solved":
            for m in windows:
                m.inc("solves")
                if ticket is not None and ticket["replies"] <= 1:
                    m.inc("one_touch_solves")
            if ticket is not None:
                ticket["history"].append([ts, "solved"])
                duration = ts - ticket["created"]
                result.resolution_seconds.append(duration / 1000)
                for m in windows:
                    m.inc("resolutions")
                    m.inc("resolution_sum_ms", duration)
                    m.quantiles("resolution").add(duration)
        elif etype == "ticket_reopened":
            for m in windows:
                m.inc("reopens")
            if ticket is not None:
                ticket["history"].append([ts, "reopened"])
        elif etype == "csat_rated":
            for m in windows:
                m.inc("csat_good" if event.score >= 4 else "csat_bad")  # type: ignore[operator]
        elif etype == "nps_rated":
            for m in windows:
                m.inc("nps_responses")
                if event.score >= 9:  # type: ignore[operator]
                    m.inc("nps_promoters")
                elif event.score <= 6:  # type: ignore[operator]
                    m.inc("nps_detractors")
        if ticket is not None:
            self.changed.add(f"t|{event.ticket_id}")
            self.touched.add(event.ticket_id)
            self.last_ts[event.ticket_id] = max(ts, self.last_ts.get(event.ticket_id, ts))

    def _first_reply(self, ticket: dict, ts: int, windows: list[Measures], result: BatchResult) -> None:
        frt = ts - ticket["created"]
        channel, priority = ticket["channel"], ticket["priority"]
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
        """
        first = previous + 1
        touched = set(self.touched)
        for ticket_id, ticket in self.tickets.items():
            if first < ticket["created"] + self.backlog_ms + 1 <= through:
                touched.add(ticket_id)
        points = {first}
        for ticket_id in touched:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                continue
            crossing = [ticket["created"], ticket["first_reply"] or ticket["created"], *(ts for ts, _ in ticket["history"])]
            points.update(ts + 1 for ts in crossing if first < ts + 1 <= through)
            if first < ticket["created"] + self.backlog_ms + 1 <= through:
                points.add(ticket["created"] + self.backlog_ms + 1)
        base_open = base_backlog = 0
        base_oldest = None
        for ticket_id, ticket in self.tickets.items():
            if ticket_id not in touched:
                is_open, in_backlog, unanswered = self._state_at(ticket, first)
                base_open += is_open
                base_backlog += in_backlog
                if unanswered is not None and (base_oldest is None or unanswered < base_oldest):
                    base_oldest = unanswered
        live = [self.tickets[t] for t in touched if t in self.tickets]
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
        self.touched = {t for t in self.touched if self.last_ts.get(t, 0) + 1 > through}
        self.last_ts = {t: self.last_ts[t] for t in self.touched if t in self.last_ts}
        self._forget_old_tickets(through)
        return steps

    def _state_at(self, ticket: dict, end: int) -> tuple[int, int, int | None]:
        """(open, in backlog, created-at if open and unanswered) of one ticket at `end`."""
        created = ticket["created"]
        if created >= end:
            return 0, 0, None
        state = "open"
        for ts, change in ticket["history"]:
            if ts < end:
                state = "open" if change == "reopened" else "solved"
        if state != "open":
            return 0, 0, None
        replied = ticket["first_reply"] is not None and ticket["first_reply"] < end
        return 1, int(end - created > self.backlog_ms), None if replied else created

    def _forget_old_tickets(self, through: int) -> None:
        for ticket_id, ticket in list(self.tickets.items()):
            history = ticket["history"]
            if history and history[-1][1] == "solved" and history[-1][0] < through - self.retention_ms:
                del self.tickets[ticket_id]
                self.changed.add(f"t|{ticket_id}")

    def dump_entity(self, kind: str, rest: str) -> bytes | None:
        if kind == "t":
            ticket = self.tickets.get(rest)
            return orjson.dumps(ticket) if ticket is not None else None
        raise KeyError(kind)

    def restore_entity(self, kind: str, rest: str, data) -> None:
        if kind == "t":
            self.tickets[rest] = data
            # Which tickets changed since the last close was not persisted: re-evaluate each once.
            self.touched.add(rest)
            self.last_ts[rest] = max([data["created"], data["first_reply"] or 0, *(ts for ts, _ in data["history"])])


ENGINES: dict[str, type[PartitionEngine]] = {
    "clickstream": ClickstreamEngine,
    "orders": OrdersEngine,
    "tickets": TicketsEngine,
}

__all__ = ["ENGINES", "BatchResult", "InvalidEvent", "PartitionEngine", "Progress", "Snapshot", "decode_partial"]
