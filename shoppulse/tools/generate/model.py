"""The traffic model: who visits the shop and what they do, with what probability and how fast.

Scenarios, the funnel and run-time knobs (`GeneratorConfig`), the catalogue (traffic
sources, devices, pages, products, ticket channels and agents), the weighted draws and
delays, and the plans: the steps a session or ticket will take, drawn when it starts.
Everything draws from the `random.Random` it is given; nothing here keeps state.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ...streams.events import ClickEventType, Device, Priority, TicketChannel

SCENARIOS = ("normal", "checkout-outage", "support-surge")
SURGE_TICKET_FACTOR = 5.0  # support-surge: this many times the tickets...
SURGE_REPLY_SLOWDOWN = (5.0, 10.0)  # ...and agents reply this much slower (uniform)

HOUR_MS = 3_600_000
LATE_SHIFT_MS = 2 * HOUR_MS  # how far in the past a late event's ts is


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


def check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")


# ------------------------------------------------------------------ draws

T = TypeVar("T")


class Weighted(Generic[T]):
    """Draws one of the keys of `weights`, each with its weight's share of the probability."""

    __slots__ = ("_cum_weights", "_keys")

    def __init__(self, weights: Mapping[T, float]) -> None:
        self._keys = tuple(weights)
        self._cum_weights = list(itertools.accumulate(weights.values()))

    def pick(self, rng: random.Random) -> T:
        return rng.choices(self._keys, cum_weights=self._cum_weights)[0]


def lognormal_ms(rng: random.Random, median_s: float, sigma: float) -> int:
    return int(rng.lognormvariate(math.log(median_s), sigma) * 1000)


def geometric(rng: random.Random, mean: float) -> int:
    """0, 1, 2, ... with the given mean."""
    if mean <= 0:
        return 0
    return int(math.log(1.0 - rng.random()) / math.log(mean / (1.0 + mean)))


def daily_factor(amplitude: float, ts: int) -> float:
    """The arrival rate's multiplier at `ts`: a sine over the day, peaking at 20:00 UTC."""
    hour = (ts / HOUR_MS) % 24
    return 1.0 + amplitude * math.sin(2 * math.pi * (hour - 14.0) / 24)


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
DEVICES: dict[Device, float] = {"desktop": 0.45, "mobile": 0.45, "tablet": 0.07, "other": 0.03}
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

TICKET_CHANNELS: dict[TicketChannel, float] = {"email": 0.35, "chat": 0.30, "web": 0.15, "phone": 0.12, "social": 0.08}
TICKET_CATEGORIES = ("shipping", "returns", "billing", "product_question", "account", "technical", "order_change")
PRIORITIES: dict[Priority, float] = {"low": 0.2, "normal": 0.55, "high": 0.18, "urgent": 0.07}
ESCALATED: dict[Priority, Priority] = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}
AGENTS = tuple(f"agent-{n:02d}" for n in range(1, 26))
# Median first-reply delay by channel (s), and how priority speeds every reply up.
FIRST_REPLY_MEDIAN_S: dict[TicketChannel, float] = {
    "chat": 90.0,
    "phone": 180.0,
    "social": 600.0,
    "web": 900.0,
    "email": 1200.0,
}
PRIORITY_SPEED: dict[Priority, float] = {"low": 1.5, "normal": 1.0, "high": 0.7, "urgent": 0.4}
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

SOURCE = Weighted({source: weight for source, (weight, _) in SOURCES.items()})
DEVICE = Weighted(DEVICES)
TICKET_CHANNEL = Weighted(TICKET_CHANNELS)
PRIORITY = Weighted(PRIORITIES)
CSAT_SCORE = Weighted(dict(zip(range(1, 6), CSAT_WEIGHTS, strict=True)))
NPS_SCORE = Weighted(dict(zip(range(11), NPS_WEIGHTS, strict=True)))


@dataclass(slots=True)
class Product:
    product_id: str
    price: float
    cost: float


def products(rng: random.Random) -> list[Product]:
    """The shop's products; prices lognormal around 35, costs 35-70 % of the price."""
    catalogue = []
    for n in range(PRODUCT_COUNT):
        price = round(rng.lognormvariate(math.log(35.0), 0.7) + 2, 2)
        catalogue.append(Product(f"p{n:04d}", price, round(price * rng.uniform(0.35, 0.7), 2)))
    return catalogue


# ------------------------------------------------------------------ plans
# A plan is the sequence of steps a session or ticket will take, drawn when it starts.
# Its timing and scenario-dependent outcomes are decided later, step by step.


def session_plan(rng: random.Random, funnel: Funnel, source: str) -> list[ClickEventType]:
    steps: list[ClickEventType] = []
    if source in EMAIL_SOURCES:
        steps.append("email_open")
        roll = rng.random()
        if roll < 0.06:
            return [*steps, "unsubscribe"]
        if roll < 0.5:
            return steps  # opened, never came to the site
        steps.append("email_click")
    if rng.random() < funnel.bounce_rate:
        return [*steps, "page_view"]
    if rng.random() < 0.6:
        steps.append("page_view")
    if rng.random() < funnel.promo_rate:
        steps.append("promo_view")
        if rng.random() < funnel.promo_click_rate:
            steps.append("promo_click")
    for _ in range(1 + geometric(rng, funnel.extra_views_mean)):
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
    extras: tuple[tuple[ClickEventType, float], ...] = (
        ("chat_start", 0.02),
        ("newsletter_signup", 0.02),
        ("sms_signup", 0.01),
        ("review_submitted", 0.015),
    )
    for step, probability in extras:
        if rng.random() < probability:
            steps.append(step)
    return steps


def ticket_plan(rng: random.Random) -> list[str]:
    """Steps, each a key of STEP_MEDIAN_S: `note` (internal), `reply`, `customer`, `escalate`, `solve`, ..."""
    if rng.random() < 0.08:
        return []  # never answered
    steps = ["note"] if rng.random() < 0.15 else []
    steps.append("reply")
    for _ in range(geometric(rng, 0.7)):
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


# ------------------------------------------------------------------ rates


def arrivals_per_ms(config: GeneratorConfig) -> tuple[float, float]:
    """(sessions, tickets) starting per ms so that their events add up to `config.rate` per second."""
    funnel = config.funnel
    purchase_events = 1.0 + config.cancel_rate + config.refund_rate  # purchase -> order_placed (+ follow-up)

    def session_events(rng: random.Random) -> float:
        plan = session_plan(rng, funnel, SOURCE.pick(rng))
        return len(plan) + ("purchase" in plan) * purchase_events

    click_rate = config.rate * (1.0 - config.ticket_rate_share)
    ticket_rate = config.rate * config.ticket_rate_share
    sessions = click_rate / _mean_events(session_events, config.seed) / 1000.0
    tickets = ticket_rate / _mean_events(lambda rng: 1 + len(ticket_plan(rng)), config.seed) / 1000.0
    return sessions, tickets


def _mean_events(sample: Callable[[random.Random], float], seed: int, n: int = 3000) -> float:
    """Average events per session or ticket, measured on sample plans (own RNG, so the main stream is untouched)."""
    rng = random.Random(f"calibrate-{seed}")
    return sum(sample(rng) for _ in range(n)) / n
