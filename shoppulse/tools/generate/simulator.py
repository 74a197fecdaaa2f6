"""The simulator: the event timeline of a shop, drawn from the traffic model.

Sessions walk a purchase funnel, purchases become orders, and support tickets live
through replies, solves and ratings. Every follow-up (the next click of a session, a
refund, an agent reply) is scheduled into the future on a heap and emitted when the
event-time clock reaches it, so the output is in timestamp order like real traffic.

Everything random comes from one `random.Random(seed)`: the same seed and config give
the same events, ids included. Decisions a scenario can change (does this purchase go
through, how slow is this reply) are made when the event is generated, so switching
`scenario` while running affects only what comes after the switch.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...streams.events import (
    ClickEvent,
    ClickEventType,
    Device,
    Event,
    OrderEvent,
    OrderEventType,
    OrderItem,
    Priority,
    TicketChannel,
    TicketEvent,
    TicketEventType,
)
from .model import (
    AGENTS,
    CAMPAIGNS,
    CONTENT_PAGES,
    CSAT_SCORE,
    DEVICE,
    ESCALATED,
    EUR_SHARE,
    FIRST_REPLY_MEDIAN_S,
    LATE_SHIFT_MS,
    NPS_SCORE,
    PAID_MEDIA,
    PRIORITY,
    PRIORITY_SPEED,
    PRODUCT_COUNT,
    SOURCE,
    SOURCES,
    STEP_MEDIAN_S,
    SURGE_REPLY_SLOWDOWN,
    SURGE_TICKET_FACTOR,
    TAX_RATE,
    TICKET_CATEGORIES,
    TICKET_CHANNEL,
    GeneratorConfig,
    Product,
    arrivals_per_ms,
    check_scenario,
    daily_factor,
    lognormal_ms,
    products,
    session_plan,
    ticket_plan,
)

# Sessions and tickets already in progress when the run starts: the generator simulates
# this much event time before `start_ms` and drops it, so the rate is right from the start.
WARMUP_MS = 5 * 60_000
MAX_KNOWN_VISITORS = 100_000

Emitted = list[tuple[str, Event]]  # (stream, event), in emission order
Handler = Callable[[int, Any, Emitted], None]  # (ts, the handler's state, where its events go)


@dataclass(slots=True)
class _Visitor:
    visitor_id: str
    device: Device
    sessions: int = 0


@dataclass(slots=True)
class _Session:
    session_id: str
    visitor: _Visitor
    device: Device
    source: str
    medium: str
    campaign: str | None
    currency: str
    steps: list[ClickEventType]
    long_gap_at: int  # index of the step that comes after the long pause; 0: none
    next_step: int = 0
    first: bool = True  # the next step is the session's first event
    product: Product | None = None  # the product last viewed
    cart: list[tuple[Product, int]] = field(default_factory=list)  # (product, quantity)


@dataclass(slots=True)
class _Ticket:
    ticket_id: str
    customer_id: str | None
    channel: TicketChannel
    priority: Priority
    agent_id: str
    steps: list[str]  # from ticket_plan
    next_step: int = 0
    replied: bool = False  # an agent has replied publicly


class TrafficGenerator:
    """Event-time simulation of a shop. `advance(until_ms)` returns what happened up to then."""

    def __init__(self, config: GeneratorConfig, start_ms: int) -> None:
        check_scenario(config.scenario)
        self.config = config
        seed = config.seed
        self._rng = random.Random(seed)
        self._ids = f"g{seed}-"
        self._count = 0
        self._seq = 0  # heap tie-breaker, so equal timestamps pop in scheduling order
        self._heap: list[tuple[int, int, Handler, object]] = []
        self._products = products(self._rng)
        self._visitors: list[_Visitor] = []  # who may come back; bounded, so long runs keep flat memory
        self._visitor_numbers = itertools.count(1)
        self._customers_with_orders: set[str] = set()
        self._session_numbers = itertools.count(1)
        self._order_numbers = itertools.count(1)
        self._ticket_numbers = itertools.count(1)
        self._sessions_per_ms, self._tickets_per_ms = arrivals_per_ms(config)

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
        check_scenario(name)
        self.config.scenario = name

    def advance(self, until_ms: int) -> Emitted:
        """All events with event time in [previous until, until_ms), in emission order."""
        out: Emitted = []
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] < until_ms:
            ts, _, handler, state = pop(heap)
            handler(ts, state, out)
        duplicates = self.config.duplicate_fraction
        if duplicates > 0 and out:
            random_ = self._rng.random
            with_copies: Emitted = []
            for item in out:
                with_copies.append(item)
                if random_() < duplicates:
                    with_copies.append(item)
            out = with_copies
        return out

    # -------------------------------------------------------------- plumbing

    def _schedule(self, ts: int, handler: Handler, state: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (ts, self._seq, handler, state))

    def _next_id(self) -> str:
        self._count += 1
        return f"{self._ids}{self._count}"

    def _daily_factor(self, ts: int) -> float:
        return daily_factor(self.config.daily_amplitude, ts)

    # -------------------------------------------------------------- sessions

    def _session_arrival(self, ts: int, _: None, out: Emitted) -> None:
        rng = self._rng
        config = self.config
        visitors = self._visitors
        if visitors and rng.random() < config.returning_rate:
            visitor = visitors[int(rng.random() * len(visitors))]
        else:
            visitor = _Visitor(f"v{config.seed}-{next(self._visitor_numbers)}", DEVICE.pick(rng))
            if len(visitors) < MAX_KNOWN_VISITORS:
                visitors.append(visitor)
            else:
                visitors[int(rng.random() * len(visitors))] = visitor
        session_id = f"s{config.seed}-{next(self._session_numbers)}"
        # Returning visitors mostly keep their device.
        device = visitor.device if rng.random() < 0.9 else DEVICE.pick(rng)
        source = SOURCE.pick(rng)
        medium = rng.choice(SOURCES[source][1])
        campaign = rng.choice(CAMPAIGNS) if medium in PAID_MEDIA and rng.random() < 0.8 else None
        currency = "EUR" if rng.random() < EUR_SHARE else "USD"
        steps = session_plan(rng, config.funnel, source)
        long_gap_at = 0  # never, also for single-step sessions
        if len(steps) > 1 and rng.random() < config.funnel.long_gap_rate:
            long_gap_at = 1 + int(rng.random() * (len(steps) - 1))
        session = _Session(session_id, visitor, device, source, medium, campaign, currency, steps, long_gap_at)
        self._session_step(ts, session, out)
        gap = rng.expovariate(self._sessions_per_ms * self._daily_factor(ts))
        self._schedule(ts + 1 + int(gap), self._session_arrival, None)

    def _session_step(self, ts: int, s: _Session, out: Emitted) -> None:
        rng = self._rng
        step = s.steps[s.next_step]
        s.next_step += 1
        if step == "purchase" and self.config.scenario == "checkout-outage":
            return  # the payment page fails; the shopper leaves
        event_id = self._next_id()  # before the order's, so ids follow emission order
        page: str | None = None
        page_type: str | None = None
        product_id: str | None = None
        price: float | None = None
        quantity: int | None = None
        currency: str | None = None
        order: OrderEvent | None = None
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
                    event_type=step,
                    ts=event_ts,
                    session_id=s.session_id,
                    visitor_id=visitor_id,
                    device=s.device,
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
                gap = min(1000 + lognormal_ms(rng, think, 1.1), int(40_000 * think))
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
            self._schedule(ts + lognormal_ms(rng, 600.0, 0.8), self._order_followup, ("order_cancelled", order))
        elif roll < config.cancel_rate + config.refund_rate:
            self._schedule(ts + lognormal_ms(rng, 1200.0, 0.8), self._order_followup, ("order_refunded", order))
        return order

    def _order_followup(self, ts: int, state: tuple[OrderEventType, OrderEvent], out: Emitted) -> None:
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
                    event_type=event_type,
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

    def _ticket_arrival(self, ts: int, _: None, out: Emitted) -> None:
        rng = self._rng
        ticket_id = f"t{self.config.seed}-{next(self._ticket_numbers)}"
        visitors = self._visitors
        customer_id = f"c-{visitors[int(rng.random() * len(visitors))].visitor_id}" if visitors else None
        channel = TICKET_CHANNEL.pick(rng)
        priority = PRIORITY.pick(rng)
        agent_id = rng.choice(AGENTS)
        t = _Ticket(ticket_id, customer_id, channel, priority, agent_id, ticket_plan(rng))
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
                    channel=t.channel,
                    category=rng.choice(TICKET_CATEGORIES),
                    priority=t.priority,
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
        self._schedule(ts + 1000 + lognormal_ms(rng, median, 0.9), self._ticket_step, t)

    def _ticket_step(self, ts: int, t: _Ticket, out: Emitted) -> None:
        step = t.steps[t.next_step]
        t.next_step += 1
        event_type: TicketEventType
        customer_id: str | None = None
        agent_id: str | None = None
        priority: Priority | None = None
        score: int | None = None
        public: bool | None = None
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
            score = CSAT_SCORE.pick(self._rng)
        else:
            event_type, customer_id = "nps_rated", t.customer_id
            score = NPS_SCORE.pick(self._rng)
        out.append(
            (
                "tickets",
                TicketEvent(
                    event_id=self._next_id(),
                    event_type=event_type,
                    ts=ts,
                    ticket_id=t.ticket_id,
                    customer_id=customer_id,
                    priority=priority,
                    agent_id=agent_id,
                    score=score,
                    public=public,
                ),
            )
        )
        self._schedule_ticket_step(ts, t)


def generate_events(config: GeneratorConfig, start_ms: int, duration_s: float) -> Iterator[tuple[str, Event]]:
    """The whole run offline, one second of event time at a time; deterministic under the seed."""
    generator = TrafficGenerator(config, start_ms)
    end = start_ms + int(duration_s * 1000)
    for until in range(start_ms + 1000, end + 1000, 1000):
        yield from generator.advance(min(until, end))
