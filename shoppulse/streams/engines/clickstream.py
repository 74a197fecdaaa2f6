"""The clickstream engine: traffic windows and sessions (GA4 rules: 30 min inactivity)."""

from __future__ import annotations

import heapq

import orjson

from ...settings import Settings
from ..events import ClickEvent, Parsed
from ..measures import Measures
from ..windows import window_start
from .base import BatchResult, PartitionEngine

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
        session = {
            "start": ts,
            "last": ts,
            "views": 0,
            "cart": False,
            "checkout": False,
            "purchase": False,
            "product": None,
        }
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
