"""`shoppulse generate`: realistic synthetic traffic for the three source topics.

Sessions walk a purchase funnel, purchases become orders, and support tickets live
through replies, solves and ratings. Every follow-up (the next click of a session, a
refund, an agent reply) is scheduled into the future on a heap and emitted when the
event-time clock reaches it, so the output is in timestamp order like real traffic.

Everything random comes from one `random.Random(seed)`: the same seed and config give
the same events, ids included (offline mode; realtime mode follows the wall clock).
Decisions a scenario can change (does this purchase go through, how slow is this
reply) are made when the event is generated, so switching `scenario` while running
affects only what comes after the switch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import math
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..settings import Settings
from ..streams.events import ClickEvent, Event, OrderEvent, OrderItem, TicketEvent
from .sink import EventSink, JsonlSink, KafkaSink

SCENARIOS = ("normal", "checkout-outage", "support-surge")

HOUR_MS = 3_600_000
LATE_SHIFT_MS = 2 * HOUR_MS
# Sessions and tickets already in progress when the run starts: the generator simulates
# this much event time before `start_ms` and drops it, so the rate is right from the start.
WARMUP_MS = 5 * 60_000
SURGE_TICKET_FACTOR = 5.0
SURGE_REPLY_SLOWDOWN = (5.0, 10.0)
MAX_KNOWN_VISITORS = 100_000
TICK_MS = 100  # realtime emission granularity


@dataclass
class Funnel:
    """Per-session probabilities of each funnel step, given the previous one happened."""

    bounce_rate: float = 0.35  # single page_view, nothing else
    cart_rate: float = 0.25  # a browsing session adds to cart
    checkout_rate: float = 0.6  # a cart begins checkout
    purchase_rate: float = 0.7  # a checkout completes
    extra_views_mean: float = 2.5  # product views beyond the first, geometric
    second_item_rate: float = 0.3  # a cart gets a second product
    remove_rate: float = 0.3  # a two-item cart drops one again
    search_rate: float = 0.15  # per product view: a search leads to it
    promo_rate: float = 0.1  # per session: a promo banner is seen
    promo_click_rate: float = 0.3
    long_gap_rate: float = 0.03  # a >30 min pause, so the session_id splits in two


@dataclass
class GeneratorConfig:
    rate: float = 50.0  # target total events/s over all topics (before duplicates)
    seed: int = 1
    scenario: str = "normal"
    funnel: Funnel = field(default_factory=Funnel)
    think_time_s: float = 15.0  # median pause between two steps of a session
    late_fraction: float = 0.0  # clickstream events emitted with a ts 2 h in the past
    duplicate_fraction: float = 0.0  # events emitted twice, the copy right after
    ticket_rate_share: float = 0.03  # share of `rate` that is ticket events (normal scenario)
    returning_rate: float = 0.3  # sessions by a visitor seen before
    daily_amplitude: float = 0.2  # rate swing over the day, peaking at 20:00 UTC
    cancel_rate: float = 0.03
    refund_rate: float = 0.03
    guest_rate: float = 0.05  # orders without a customer_id


# ------------------------------------------------------------------ catalogue

SOURCES: dict[str, tuple[float, tuple[str, ...]]] = {  # source -> (weight, media)
    "google": (0.28, ("organic", "organic", "cpc")),
    "direct": (0.17, ("(none)",)),
    "email": (0.08, ("email",)),
    "facebook": (0.08, ("paid_social", "social")),
    "instagram": (0.07, ("paid_social", "social")),
    "tiktok": (0.05, ("paid_social", "social")),
    "bing": (0.04, ("organic", "cpc")),
    "newsletter": (0.04, ("email",)),
    "affiliate": (0.04, ("affiliate",)),
    "pinterest": (0.04, ("social",)),
    "youtube": (0.03, ("video",)),
    "reddit": (0.03, ("social",)),
    "chatgpt": (0.02, ("referral",)),
    "partner_blog": (0.03, ("referral",)),
}
EMAIL_SOURCES = {"email", "newsletter"}
CAMPAIGNS = ("spring_sale", "brand", "retargeting", "new_arrivals", "weekly_digest", "free_shipping")
PAID_MEDIA = {"cpc", "paid_social", "email", "affiliate"}
DEVICES = {"desktop": 0.45, "mobile": 0.45, "tablet": 0.07, "other": 0.03}
CONTENT_PAGES = (
    ("/", "home"),
    ("/", "home"),
    ("/category/shoes", "category"),
    ("/category/bags", "category"),
    ("/category/outerwear", "category"),
    ("/sale", "category"),
    ("/blog/care-guide", "content"),
)
PRODUCT_COUNT = 300
EUR_SHARE = 0.15
TAX_RATE = {"USD": 0.08, "EUR": 0.0}  # EUR prices include VAT

TICKET_CHANNELS = {"email": 0.35, "chat": 0.30, "web": 0.15, "phone": 0.12, "social": 0.08}
TICKET_CATEGORIES = ("shipping", "returns", "billing", "product_question", "account", "technical", "order_change")
PRIORITIES = {"low": 0.2, "normal": 0.55, "high": 0.18, "urgent": 0.07}
ESCALATED = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}
AGENTS = tuple(f"agent-{n:02d}" for n in range(1, 26))
# Median first-reply delay by channel (s), and how priority speeds every reply up.
FIRST_REPLY_MEDIAN_S = {"chat": 90.0, "phone": 180.0, "social": 600.0, "web": 900.0, "email": 1200.0}
PRIORITY_SPEED = {"low": 1.5, "normal": 1.0, "high": 0.7, "urgent": 0.4}
# Median delay (s) before each later ticket step; lognormal around it.
STEP_MEDIAN_S = {
    "note": 120.0,
    "reply": 360.0,
    "customer": 480.0,
    "escalate": 300.0,
    "solve": 240.0,
    "reopen": 600.0,
    "csat": 600.0,
    "nps": 900.0,
}
CSAT_WEIGHTS = (0.07, 0.06, 0.12, 0.30, 0.45)  # scores 1..5
NPS_WEIGHTS = (0.02, 0.01, 0.02, 0.03, 0.03, 0.06, 0.08, 0.12, 0.18, 0.20, 0.25)  # scores 0..10


def _cumulative(weights) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


_SOURCE_NAMES = tuple(SOURCES)
_SOURCE_CUM = _cumulative(w for w, _ in SOURCES.values())
_DEVICE_NAMES = tuple(DEVICES)
_DEVICE_CUM = _cumulative(DEVICES.values())
_CHANNEL_NAMES = tuple(TICKET_CHANNELS)
_CHANNEL_CUM = _cumulative(TICKET_CHANNELS.values())
_PRIORITY_NAMES = tuple(PRIORITIES)
_PRIORITY_CUM = _cumulative(PRIORITIES.values())
_CSAT_CUM = _cumulative(CSAT_WEIGHTS)
_NPS_CUM = _cumulative(NPS_WEIGHTS)


def _pick(rng: random.Random, names: tuple, cum: list[float]) -> str:
    return rng.choices(names, cum_weights=cum)[0]


def _lognormal_ms(rng: random.Random, median_s: float, sigma: float) -> int:
    return int(rng.lognormvariate(math.log(median_s), sigma) * 1000)


def _geometric(rng: random.Random, mean: float) -> int:
    """0, 1, 2, ... with the given mean."""
    if mean <= 0:
        return 0
    return int(math.log(1.0 - rng.random()) / math.log(mean / (1.0 + mean)))


# ------------------------------------------------------------------ plans
# A plan is the sequence of steps a session or ticket will take, drawn when it starts.
# Its timing and scenario-dependent outcomes are decided later, step by step.


def _session_plan(rng: random.Random, funnel: Funnel, source: str) -> list[str]:
    steps: list[str] = []
    if source in EMAIL_SOURCES:
        steps.append("email_open")
        roll = rng.random()
        if roll < 0.06:
            return steps + ["unsubscribe"]
        if roll < 0.5:
            return steps  # opened, never came to the site
        steps.append("email_click")
    if rng.random() < funnel.bounce_rate:
        return steps + ["page_view"]
    if rng.random() < 0.6:
        steps.append("page_view")
    if rng.random() < funnel.promo_rate:
        steps.append("promo_view")
        if rng.random() < funnel.promo_click_rate:
            steps.append("promo_click")
    for _ in range(1 + _geometric(rng, funnel.extra_views_mean)):
        if rng.random() < funnel.search_rate:
            steps.append("search")
        steps.append("product_view")
    if rng.random() < funnel.cart_rate:
        steps.append("add_to_cart")
        if rng.random() < funnel.second_item_rate:
            steps += ["product_view", "add_to_cart"]
            if rng.random() < funnel.remove_rate:
                steps.append("remove_from_cart")
        if rng.random() < funnel.checkout_rate:
            steps.append("begin_checkout")
            if rng.random() < funnel.purchase_rate:
                steps.append("purchase")
    for step, probability in (
        ("chat_start", 0.02),
        ("newsletter_signup", 0.02),
        ("sms_signup", 0.01),
        ("review_submitted", 0.015),
    ):
        if rng.random() < probability:
            steps.append(step)
    return steps


def _ticket_plan(rng: random.Random) -> list[str]:
    if rng.random() < 0.08:
        return []  # never answered
    steps = ["note"] if rng.random() < 0.15 else []
    steps.append("reply")
    for _ in range(_geometric(rng, 0.7)):
        steps += ["customer", "reply"]
    if rng.random() < 0.1:
        steps += ["escalate", "reply"]
    steps.append("solve")
    if rng.random() < 0.1:
        steps += ["reopen", "customer", "reply", "solve"]
    if rng.random() < 0.45:
        steps.append("csat")
    if rng.random() < 0.25:
        steps.append("nps")
    return steps


def _mean_events(sample: Callable[[random.Random], float], seed: int, n: int = 3000) -> float:
    """Average events per session or ticket, measured on sample plans (own RNG, so the main stream is untouched)."""
    rng = random.Random(f"calibrate-{seed}")
    return sum(sample(rng) for _ in range(n)) / n


# ------------------------------------------------------------------ state


class _Visitor:
    __slots__ = ("device", "sessions", "visitor_id")

    def __init__(self, visitor_id: str, device: str) -> None:
        self.visitor_id = visitor_id
        self.device = device
        self.sessions = 0


class _Session:
    __slots__ = (
        "campaign",
        "cart",
        "currency",
        "device",
        "first",
        "long_gap_at",
        "medium",
        "next_step",
        "product",
        "session_id",
        "source",
        "steps",
        "visitor",
    )


class _Ticket:
    __slots__ = ("agent_id", "channel", "customer_id", "next_step", "priority", "replied", "steps", "ticket_id")


@dataclass(slots=True)
class _Product:
    product_id: str
    price: float
    cost: float


class TrafficGenerator:
    """Event-time simulation of a shop. `advance(until_ms)` returns what happened up to then."""

    def __init__(self, config: GeneratorConfig, start_ms: int) -> None:
        if config.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {config.scenario!r}; choose one of {', '.join(SCENARIOS)}")
        self.config = config
        seed = config.seed
        self._rng = rng = random.Random(seed)
        self._ids = f"g{seed}-"
        self._count = 0
        self._seq = 0  # heap tie-breaker, so equal timestamps pop in scheduling order
        self._heap: list[tuple[int, int, Callable, object]] = []
        self._products: list[_Product] = []
        for n in range(PRODUCT_COUNT):
            price = round(rng.lognormvariate(math.log(35.0), 0.7) + 2, 2)
            self._products.append(_Product(f"p{n:04d}", price, round(price * rng.uniform(0.35, 0.7), 2)))
        self._visitors: list[_Visitor] = []  # who may come back; bounded, so long runs keep flat memory
        self._visitor_numbers = itertools.count(1)
        self._customers_with_orders: set[str] = set()
        self._session_numbers = itertools.count(1)
        self._order_numbers = itertools.count(1)
        self._ticket_numbers = itertools.count(1)

        funnel = config.funnel
        purchase_events = 1.0 + config.cancel_rate + config.refund_rate  # purchase -> order_placed (+ follow-up)

        def session_events(r: random.Random) -> float:
            plan = _session_plan(r, funnel, _pick(r, _SOURCE_NAMES, _SOURCE_CUM))
            return len(plan) + ("purchase" in plan) * purchase_events

        click_rate = config.rate * (1.0 - config.ticket_rate_share)
        ticket_rate = config.rate * config.ticket_rate_share
        self._sessions_per_ms = click_rate / _mean_events(session_events, seed) / 1000.0
        self._tickets_per_ms = ticket_rate / _mean_events(lambda r: 1 + len(_ticket_plan(r)), seed) / 1000.0

        first = start_ms - WARMUP_MS
        self._schedule(first, self._session_arrival, None)
        self._schedule(first, self._ticket_arrival, None)
        self.advance(start_ms)  # warm-up, dropped

    # -------------------------------------------------------------- public

    @property
    def scenario(self) -> str:
        return self.config.scenario

    @scenario.setter
    def scenario(self, name: str) -> None:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
        self.config.scenario = name

    def advance(self, until_ms: int) -> list[tuple[str, Event]]:
        """All events with event time in [previous until, until_ms), in emission order."""
        out: list[tuple[str, Event]] = []
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] < until_ms:
            ts, _, handler, state = pop(heap)
            handler(ts, state, out)
        duplicates = self.config.duplicate_fraction
        if duplicates > 0 and out:
            random_ = self._rng.random
            with_copies: list[tuple[str, Event]] = []
            for item in out:
                with_copies.append(item)
                if random_() < duplicates:
                    with_copies.append(item)
            out = with_copies
        return out

    # -------------------------------------------------------------- plumbing

    def _schedule(self, ts: int, handler: Callable, state: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (ts, self._seq, handler, state))

    def _next_id(self) -> str:
        self._count += 1
        return f"{self._ids}{self._count}"

    def _daily_factor(self, ts: int) -> float:
        hour = (ts / HOUR_MS) % 24
        return 1.0 + self.config.daily_amplitude * math.sin(2 * math.pi * (hour - 14.0) / 24)

    # -------------------------------------------------------------- sessions

    def _session_arrival(self, ts: int, _: None, out: list) -> None:
        rng = self._rng
        config = self.config
        visitors = self._visitors
        if visitors and rng.random() < config.returning_rate:
            visitor = visitors[int(rng.random() * len(visitors))]
        else:
            visitor = _Visitor(f"v{config.seed}-{next(self._visitor_numbers)}", _pick(rng, _DEVICE_NAMES, _DEVICE_CUM))
            if len(visitors) < MAX_KNOWN_VISITORS:
                visitors.append(visitor)
            else:
                visitors[int(rng.random() * len(visitors))] = visitor
        session = _Session()
        session.session_id = f"s{config.seed}-{next(self._session_numbers)}"
        session.visitor = visitor
        session.first = True
        # Returning visitors mostly keep their device.
        session.device = visitor.device if rng.random() < 0.9 else _pick(rng, _DEVICE_NAMES, _DEVICE_CUM)
        source = session.source = _pick(rng, _SOURCE_NAMES, _SOURCE_CUM)
        medium = session.medium = rng.choice(SOURCES[source][1])
        session.campaign = rng.choice(CAMPAIGNS) if medium in PAID_MEDIA and rng.random() < 0.8 else None
        session.currency = "EUR" if rng.random() < EUR_SHARE else "USD"
        session.steps = _session_plan(rng, config.funnel, source)
        session.next_step = 0
        steps = len(session.steps)
        # Index of the step that comes after the long pause; 0 (never) for single-step sessions.
        session.long_gap_at = 0
        if steps > 1 and rng.random() < config.funnel.long_gap_rate:
            session.long_gap_at = 1 + int(rng.random() * (steps - 1))
        session.product = None
        session.cart = []
        self._session_step(ts, session, out)
        gap = rng.expovariate(self._sessions_per_ms * self._daily_factor(ts))
        self._schedule(ts + 1 + int(gap), self._session_arrival, None)

    def _session_step(self, ts: int, s: _Session, out: list) -> None:
        rng = self._rng
        step = s.steps[s.next_step]
        s.next_step += 1
        if step == "purchase" and self.config.scenario == "checkout-outage":
            return  # the payment page fails; the shopper leaves
        event_id = self._next_id()  # before the order's, so ids follow emission order
        page = page_type = product_id = price = quantity = currency = order = None
        if step in ("product_view", "add_to_cart"):
            if step == "product_view" or s.product is None:
                s.product = self._products[int(PRODUCT_COUNT * rng.random() ** 1.5)]  # low ids sell best
            product = s.product
            product_id, price = product.product_id, product.price
            page, page_type = f"/products/{product_id}", "product"
            if step == "add_to_cart":
                quantity = 1 if rng.random() < 0.85 else 2
                currency = s.currency
                s.cart.append((product, quantity))
        elif step == "remove_from_cart":
            product, quantity = s.cart.pop()
            product_id, price, currency = product.product_id, product.price, s.currency
            page, page_type = "/cart", "cart"
        elif step == "page_view":
            page, page_type = rng.choice(CONTENT_PAGES)
        elif step == "search":
            page, page_type = "/search", "search"
        elif step == "begin_checkout":
            page, page_type = "/checkout", "checkout"
        elif step == "purchase":
            page, page_type, currency = "/checkout/thank-you", "checkout", s.currency
            order = self._place_order(ts, s)
            price = round(sum(i.unit_price * i.quantity for i in order.items) - order.discount, 2)
            quantity = sum(i.quantity for i in order.items)
        is_new = None
        if s.first:
            s.first = False
            s.visitor.sessions += 1
            if rng.random() < 0.5:  # only some trackers send the flag
                is_new = s.visitor.sessions == 1
        event_ts = ts
        if self.config.late_fraction > 0 and rng.random() < self.config.late_fraction:
            event_ts = ts - LATE_SHIFT_MS
        visitor_id = s.visitor.visitor_id
        out.append(
            (
                "clickstream",
                ClickEvent(
                    event_id=event_id,
                    event_type=step,  # type: ignore[arg-type]
                    ts=event_ts,
                    session_id=s.session_id,
                    visitor_id=visitor_id,
                    device=s.device,  # type: ignore[arg-type]
                    source=s.source,
                    medium=s.medium,
                    campaign=s.campaign,
                    page=page,
                    page_type=page_type,
                    product_id=product_id,
                    price=price,
                    quantity=quantity,
                    currency=currency,
                    is_new_visitor=is_new,
                ),
            )
        )
        if order is not None:
            out.append(("orders", order))
        if s.next_step < len(s.steps):
            if s.next_step == s.long_gap_at:
                gap = rng.randint(31 * 60_000, 45 * 60_000)
            else:
                think = self.config.think_time_s
                gap = min(1000 + _lognormal_ms(rng, think, 1.1), int(40_000 * think))
            self._schedule(ts + gap, self._session_step, s)

    # -------------------------------------------------------------- orders

    def _place_order(self, ts: int, s: _Session) -> OrderEvent:
        """Build the order for a purchase (emitted right after it) and schedule any cancel or refund."""
        rng = self._rng
        config = self.config
        visitor_id = s.visitor.visitor_id
        customer_id = None if rng.random() < config.guest_rate else f"c-{visitor_id}"
        items = [
            OrderItem(
                product_id=product.product_id,
                quantity=quantity,
                unit_price=product.price,
                unit_cost=product.cost if rng.random() < 0.9 else None,
            )
            for product, quantity in s.cart
        ]
        subtotal = sum(product.price * quantity for product, quantity in s.cart)
        discount = round(subtotal * rng.choice((0.05, 0.1, 0.15, 0.2)), 2) if rng.random() < 0.2 else 0.0
        is_first = None
        if customer_id is not None:
            first_seen = customer_id not in self._customers_with_orders
            self._customers_with_orders.add(customer_id)
            if rng.random() < 0.6:  # not every order source knows
                is_first = first_seen
        order = OrderEvent(
            event_id=self._next_id(),
            event_type="order_placed",
            ts=ts,
            order_id=f"o{config.seed}-{next(self._order_numbers)}",
            customer_id=customer_id,
            session_id=s.session_id,
            visitor_id=visitor_id,
            currency=s.currency,
            items=items,
            discount=discount,
            shipping=0.0 if subtotal >= 75 else 5.99,
            tax=round((subtotal - discount) * TAX_RATE[s.currency], 2),
            is_first_order=is_first,
            channel="app" if s.device == "mobile" and rng.random() < 0.5 else "web",
        )
        roll = rng.random()
        if roll < config.cancel_rate:
            self._schedule(ts + _lognormal_ms(rng, 600.0, 0.8), self._order_followup, ("order_cancelled", order))
        elif roll < config.cancel_rate + config.refund_rate:
            self._schedule(ts + _lognormal_ms(rng, 1200.0, 0.8), self._order_followup, ("order_refunded", order))
        return order

    def _order_followup(self, ts: int, state: tuple[str, OrderEvent], out: list) -> None:
        event_type, order = state
        refund = None
        if event_type == "order_refunded":
            goods = sum(i.unit_price * i.quantity for i in order.items) - order.discount
            full = goods + order.shipping + order.tax
            partial = order.items[0].unit_price * order.items[0].quantity
            refund = round(full if self._rng.random() < 0.6 else min(partial, full), 2)
        out.append(
            (
                "orders",
                OrderEvent(
                    event_id=self._next_id(),
                    event_type=event_type,  # type: ignore[arg-type]
                    ts=ts,
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    session_id=order.session_id,
                    visitor_id=order.visitor_id,
                    currency=order.currency,
                    refund_amount=refund,
                ),
            )
        )

    # -------------------------------------------------------------- tickets

    def _ticket_arrival(self, ts: int, _: None, out: list) -> None:
        rng = self._rng
        t = _Ticket()
        t.ticket_id = f"t{self.config.seed}-{next(self._ticket_numbers)}"
        visitors = self._visitors
        t.customer_id = f"c-{visitors[int(rng.random() * len(visitors))].visitor_id}" if visitors else None
        t.channel = _pick(rng, _CHANNEL_NAMES, _CHANNEL_CUM)
        t.priority = _pick(rng, _PRIORITY_NAMES, _PRIORITY_CUM)
        t.agent_id = rng.choice(AGENTS)
        t.steps = _ticket_plan(rng)
        t.next_step = 0
        t.replied = False
        product_id = self._products[int(rng.random() * PRODUCT_COUNT)].product_id if rng.random() < 0.4 else None
        out.append(
            (
                "tickets",
                TicketEvent(
                    event_id=self._next_id(),
                    event_type="ticket_created",
                    ts=ts,
                    ticket_id=t.ticket_id,
                    customer_id=t.customer_id,
                    channel=t.channel,  # type: ignore[arg-type]
                    category=rng.choice(TICKET_CATEGORIES),
                    priority=t.priority,  # type: ignore[arg-type]
                    product_id=product_id,
                ),
            )
        )
        self._schedule_ticket_step(ts, t)
        per_ms = self._tickets_per_ms * self._daily_factor(ts)
        if self.config.scenario == "support-surge":
            per_ms *= SURGE_TICKET_FACTOR
        self._schedule(ts + 1 + int(rng.expovariate(per_ms)), self._ticket_arrival, None)

    def _schedule_ticket_step(self, ts: int, t: _Ticket) -> None:
        if t.next_step >= len(t.steps):
            return
        rng = self._rng
        step = t.steps[t.next_step]
        if step == "reply":
            median = STEP_MEDIAN_S["reply"] if t.replied else FIRST_REPLY_MEDIAN_S[t.channel]
            median *= PRIORITY_SPEED[t.priority]
            if self.config.scenario == "support-surge":
                median *= rng.uniform(*SURGE_REPLY_SLOWDOWN)
        else:
            median = STEP_MEDIAN_S[step]
        self._schedule(ts + 1000 + _lognormal_ms(rng, median, 0.9), self._ticket_step, t)

    def _ticket_step(self, ts: int, t: _Ticket, out: list) -> None:
        step = t.steps[t.next_step]
        t.next_step += 1
        customer_id = agent_id = priority = score = public = None
        if step in ("note", "reply"):
            event_type, agent_id, public = "agent_replied", t.agent_id, step == "reply"
            t.replied = t.replied or public
        elif step == "customer":
            event_type, customer_id = "customer_replied", t.customer_id
        elif step == "escalate":
            event_type = "ticket_escalated"
            priority = t.priority = ESCALATED[t.priority]
        elif step == "solve":
            event_type, agent_id = "ticket_solved", t.agent_id
        elif step == "reopen":
            event_type, customer_id = "ticket_reopened", t.customer_id
        elif step == "csat":
            event_type, customer_id = "csat_rated", t.customer_id
            score = 1 + self._rng.choices(range(5), cum_weights=_CSAT_CUM)[0]
        else:
            event_type, customer_id = "nps_rated", t.customer_id
            score = self._rng.choices(range(11), cum_weights=_NPS_CUM)[0]
        out.append(
            (
                "tickets",
                TicketEvent(
                    event_id=self._next_id(),
                    event_type=event_type,  # type: ignore[arg-type]
                    ts=ts,
                    ticket_id=t.ticket_id,
                    customer_id=customer_id,
                    priority=priority,  # type: ignore[arg-type]
                    agent_id=agent_id,
                    score=score,
                    public=public,
                ),
            )
        )
        self._schedule_ticket_step(ts, t)


# ------------------------------------------------------------------ running


def generate_events(config: GeneratorConfig, start_ms: int, duration_s: float) -> Iterator[tuple[str, Event]]:
    """The whole run offline, one second of event time at a time; deterministic under the seed."""
    generator = TrafficGenerator(config, start_ms)
    end = start_ms + int(duration_s * 1000)
    for until in range(start_ms + 1000, end + 1000, 1000):
        yield from generator.advance(min(until, end))


def _now_ms() -> int:
    return int(time.time() * 1000)


async def run(
    config: GeneratorConfig,
    sink: EventSink,
    *,
    duration_s: float | None,
    realtime: bool,
    start_ms: int | None = None,
    show_progress: bool = True,
    stop: asyncio.Event | None = None,
) -> Counter:
    """Send generated events to `sink`; returns counts by (stream, event_type).

    realtime: event time is the wall clock, sent in 100 ms ticks; runs until `duration_s`
    passes or `stop` is set. Otherwise: a synthetic timeline from `start_ms` (default: now,
    rounded down to the minute), as fast as the sink takes it. `config.scenario` may be
    changed while this runs.
    """
    if duration_s is None and not realtime:
        raise ValueError("an offline run needs a duration")
    if realtime:
        start = _now_ms() if start_ms is None else start_ms
    else:
        start = (_now_ms() // 60_000) * 60_000 if start_ms is None else start_ms
    end = None if duration_s is None else start + int(duration_s * 1000)
    generator = TrafficGenerator(config, start)
    counts: Counter = Counter()
    progress = Progress(
        TextColumn("[bold]generate[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s" if duration_s else "{task.completed:.0f} s"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    )
    with progress:
        task = progress.add_task("", total=duration_s)
        clock = start
        while (end is None or clock < end) and not (stop is not None and stop.is_set()):
            if realtime:
                target = _now_ms() if end is None else min(_now_ms(), end)
            else:
                target = clock + 1000 if end is None else min(clock + 1000, end)
            for stream, event in generator.advance(target):
                await sink.send(stream, event)
                counts[(stream, event.event_type)] += 1
            clock = target
            description = f"{sum(counts.values()):,} events ({generator.scenario})"
            progress.update(task, completed=(clock - start) / 1000, description=description)
            if realtime:
                await _sleep_or_stop(TICK_MS / 1000, stop)
            else:
                await asyncio.sleep(0)  # let other tasks (a stop signal) run
    return counts


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# ------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `shoppulse generate` options; `cli.py` wires them to `command`."""
    parser.add_argument(
        "--rate", type=float, default=50.0, metavar="EV_PER_S", help="target events per second, all topics"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="seconds to run (default: until Ctrl-C; 600 with --out)"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="N")
    parser.add_argument("--scenario", choices=SCENARIOS, default="normal")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--broker", metavar="URL", help="Kafka bootstrap server (default from settings); events are sent in real time"
    )
    target.add_argument(
        "--out", metavar="FILE.jsonl", help="write a synthetic timeline to a JSONL file, as fast as possible"
    )


def command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    config = GeneratorConfig(rate=args.rate, seed=args.seed, scenario=args.scenario)
    console = Console(stderr=True)
    if args.out:
        duration, realtime = (600.0 if args.duration is None else args.duration), False
    else:
        settings = settings or Settings()
        if args.broker:
            settings.broker = args.broker
        duration, realtime = args.duration, True

    async def main() -> Counter:
        # Inside the loop: aiokafka's producer must be created within a running event loop.
        sink: EventSink = JsonlSink(args.out) if args.out else KafkaSink(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with sink:
            return await run(config, sink, duration_s=duration, realtime=realtime, stop=stop)

    counts = asyncio.run(main())
    by_stream = Counter()
    for (stream, _), n in counts.items():
        by_stream[stream] += n
    summary = ", ".join(f"{stream} {n:,}" for stream, n in sorted(by_stream.items()))
    console.print(f"sent {sum(counts.values()):,} events ({summary})" + (f" to {args.out}" if args.out else ""))
    return 0
