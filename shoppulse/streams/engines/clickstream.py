"""The clickstream engine: traffic windows and sessions (GA4 rules: 30 min inactivity)."""

from __future__ import annotations

import heapq
from collections import Counter

import msgspec

from ...settings import Settings
from ..cold import ColdStore, SeenKeys
from ..events import ClickEvent, Parsed
from ..measures import Measures
from ..state_keys import SessionKey, StateKey, VisitorKey
from ..windows import window_start
from .base import BatchResult, PartitionEngine, encode_state

VIEW_TYPES = frozenset(("page_view", "product_view"))
COUNTED_TYPES = {
    "promo_view": "promo_views",
    "promo_click": "promo_clicks",
    "email_open": "email_opens",
    "email_click": "email_clicks",
    "newsletter_signup": "newsletter_signups",
    "sms_signup": "sms_signups",
    "unsubscribe": "unsubscribes",
    "chat_start": "chats_started",
    "search": "searches",
    "review_submitted": "reviews_submitted",
}
ENGAGED_MS = 10_000


class Session(msgspec.Struct):
    """One open session: its first and last event times, views, funnel steps, last product viewed."""

    start: int
    last: int
    views: int = 0
    cart: bool = False
    checkout: bool = False
    purchase: bool = False
    product: str | None = None


_decode_session = msgspec.json.Decoder(Session).decode


class ClickstreamEngine(PartitionEngine):
    stream = "clickstream"
    families = ("traffic", "sessions")

    def __init__(self, partition: int, settings: Settings, cold: ColdStore | None = None):
        super().__init__(partition, settings, cold)
        self.session_timeout_ms = int(settings.session_timeout_seconds * 1000)
        self.sessions: dict[SessionKey, Session] = {}
        # Heap of (due, session): each open session has an entry with due <= its last ts +
        # timeout, moved forward when popped early, so the heap holds about one entry per
        # session rather than one per click (each holding that click's decoded key strings).
        self.expiry: list[tuple[int, SessionKey]] = []
        self.seen_visitors = SeenKeys(self.cold, self.cold_prefix + "visitors")
        self.restored_visitors: list[str] = []  # collected by a restore, stored in one write
        self.largest = self.sizes[-1]
        # Open sessions per 1-minute window of their start: the oldest start bounds progress,
        # and there are far fewer windows than sessions to scan.
        self.open_by_window: dict[int, int] = {}

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event = parsed.event_as(ClickEvent)
        ts = parsed.ts_ms
        session_key = SessionKey(event.visitor_id, event.session_id)
        session = self.sessions.get(session_key)
        if session is not None and ts - session.last > self.session_timeout_ms:
            self._end_session(session_key)
            session = None
        traffic = self.measures_for("traffic", ts)
        if session is None:
            session = self._start_session(event, session_key, ts, traffic)
        etype = event.event_type
        for m in traffic:
            m.distinct("visitors").add(event.visitor_id)
        if etype in VIEW_TYPES:
            session.views += 1
            for m in traffic:
                m.inc("page_views")
            if etype == "product_view" and event.product_id:
                previous = session.product
                if previous and previous != event.product_id:
                    # Insight lists are for the largest window only.
                    traffic[-1].top_items("view_pairs").add(f"{previous}>{event.product_id}")
                session.product = event.product_id
        elif etype in COUNTED_TYPES:
            for m in traffic:
                m.inc(COUNTED_TYPES[etype])
        elif etype == "add_to_cart":
            session.cart = True
        elif etype == "begin_checkout":
            session.checkout = True
        elif etype == "purchase":
            session.purchase = True
        if ts > session.last:
            session.last = ts
        self.changed.add(session_key)

    def _start_session(self, event: ClickEvent, session_key: SessionKey, ts: int, traffic: list[Measures]) -> Session:
        first_sight = event.visitor_id not in self.seen_visitors
        new = event.is_new_visitor if event.is_new_visitor is not None else first_sight
        if first_sight:
            self.seen_visitors.add(event.visitor_id)
            self.changed.add(VisitorKey(event.visitor_id))
        for m in traffic:
            m.inc("sessions")
            m.inc_label("sessions_by_device", event.device or "unknown")
            m.inc_label("sessions_by_source", event.source or "(direct)")
            if new:
                m.inc("new_visitor_sessions")
        session = Session(start=ts, last=ts)
        self._track(session_key, session)
        return session

    def _track(self, session_key: SessionKey, session: Session) -> None:
        self.sessions[session_key] = session
        start_window = window_start(session.start, self.smallest)
        self.open_by_window[start_window] = self.open_by_window.get(start_window, 0) + 1
        heapq.heappush(self.expiry, (session.last + self.session_timeout_ms, session_key))

    def _end_session(self, session_key: SessionKey) -> None:
        session = self.sessions.pop(session_key)
        start_window = window_start(session.start, self.smallest)
        if self.open_by_window[start_window] == 1:
            del self.open_by_window[start_window]
        else:
            self.open_by_window[start_window] -= 1
        self.changed.add(session_key)
        duration = session.last - session.start
        engaged = duration > ENGAGED_MS or session.views >= 2 or session.purchase
        for m in self.measures_for("sessions", session.start):
            m.inc("ended_sessions")
            m.inc("session_views", session.views)
            m.inc("session_duration_ms", duration)
            if engaged:
                m.inc("engaged_sessions")
            if session.purchase:
                m.inc("converted_sessions")
            if session.cart:
                m.inc("cart_sessions")
                if not session.purchase:
                    m.inc("abandoned_cart_sessions")
            if session.checkout:
                m.inc("checkout_sessions")
                if not session.purchase:
                    m.inc("abandoned_checkout_sessions")

    def _end_expired_sessions(self) -> None:
        wm = self.watermark.value
        # A gap of exactly the timeout continues the session (it splits after more than that).
        expiry = self.expiry
        while expiry and expiry[0][0] < wm:
            due, session_key = heapq.heappop(expiry)
            session = self.sessions.get(session_key)
            if session is None:
                continue  # ended already (an entry left from before a split)
            actual = session.last + self.session_timeout_ms
            if actual == due:
                self._end_session(session_key)
            elif actual > due:
                heapq.heappush(expiry, (actual, session_key))

    def _close(self) -> None:
        # Sessions the watermark has passed end first: their counts go to windows that may close now.
        self._end_expired_sessions()
        super()._close()

    def family_progress(self, family: str) -> int:
        through = self.watermark.value - self.grace_ms
        if family == "sessions" and self.open_by_window:
            # A window is final only once every session that started in it has ended.
            through = min(through, min(self.open_by_window))
        return through

    def dump_entity(self, key: StateKey) -> bytes | None:
        match key:
            case SessionKey():
                session = self.sessions.get(key)
                return encode_state(session) if session is not None else None
            case VisitorKey():
                return b"1"
        raise KeyError(key)

    def restore_entity(self, key: StateKey, value: bytes) -> None:
        # isinstance, not `match`: called for every session and visitor row of a restore.
        if isinstance(key, SessionKey):
            self.sessions[key] = _decode_session(value)  # tracked in `entities_restored`
        elif isinstance(key, VisitorKey):
            self.restored_visitors.append(key.visitor_id)
        else:
            raise KeyError(key)

    def entities_restored(self) -> None:
        self.seen_visitors.add_many(self.restored_visitors)
        self.restored_visitors = []
        # One heapify and one count for all the sessions, not a push and an update for each.
        timeout = self.session_timeout_ms
        self.expiry = [(session.last + timeout, key) for key, session in self.sessions.items()]
        heapq.heapify(self.expiry)
        starts = Counter(window_start(session.start, self.smallest) for session in self.sessions.values())
        self.open_by_window = dict(starts)
