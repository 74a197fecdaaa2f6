"""The demo's view model: final records of closed windows in, lines and sparklines out."""

from shoppulse.settings import Settings
from shoppulse.streams.goals import goals
from shoppulse.tools.view import FAMILIES, Board, Health, sparkline


def _record(kpi, start, value, final=True, window="1m", **dims):
    return {"kpi": kpi, "window": window, "window_start": start, "dimensions": dims, "value": value, "final": final}


FAMILY_KPIS = {"traffic": "sessions", "sessions": "conversion_rate", "sales": "orders", "support": "tickets_created"}


def test_a_window_is_complete_once_all_four_families_are_final():
    board = Board(goals(Settings()))
    start = "2026-11-23T08:00:00.000Z"
    for family in FAMILIES[:-1]:
        board.on_record(_record(FAMILY_KPIS[family], start, 1), now=0)
    board.on_record(_record("orders", "2026-11-23T08:01:00.000Z", 5, final=False), now=0)  # open: ignored
    board.on_record(_record("orders", start, 9, window="5m"), now=0)  # other window size: ignored
    assert board.complete(now=1) == []
    board.on_record(_record("tickets_created", start, 4), now=2)
    [window] = board.complete(now=3)
    assert window.get("orders", {}) == 1 and window.get("tickets_created", {}) == 4
    assert board.complete(now=4) == []  # reported once


def test_an_incomplete_window_is_reported_after_the_wait():
    board = Board(goals(Settings()), complete_after_s=30)
    board.on_record(_record("sessions", "2026-11-23T08:00:00.000Z", 10), now=100)
    assert board.complete(now=120) == []
    assert len(board.complete(now=131)) == 1


def test_line_shows_values_formatted_with_their_units():
    board = Board(goals(Settings()))
    start = "2026-11-23T08:00:00.000Z"
    for record in (
        _record("sessions", start, 200),
        _record("conversion_rate", start, 0.0),
        _record("orders", start, 0),
        _record("revenue", start, 12.5, currency="EUR"),
        _record("first_response_seconds", start, 95.0, quantile="0.9"),
    ):
        board.on_record(record, now=0)
    [window] = board.complete(now=1000)
    line = board.line(window, "checkout-outage")
    assert line.startswith("2026-11-23T08:00:00Z 1m sessions=200 conversion=0.0% ")
    assert "frt_p90=1m 35s" in line and "revenue=EUR 12.50" in line and line.endswith("scenario=checkout-outage")
    assert "bounce=n/a" in line  # no value: not shown as zero


def test_health_rates_from_two_scrapes():
    health = Health()
    scrape = (
        'shoppulse_events_total{{topic="c",outcome="ok"}} {ok}\nshoppulse_events_total{{topic="c",outcome="late"}} 3\n'
        'shoppulse_watermark_lag_seconds{{topic="c"}} 2.5\n'
    )
    health.on_scrape(scrape.format(ok=100), now=10.0)
    health.on_scrape(scrape.format(ok=400), now=12.0)
    assert health.events_per_second == 150 and health.late == 3 and health.watermark_lag_seconds == 2.5


def test_sparkline_scales_and_keeps_gaps():
    assert sparkline([0, 5, 10]) == "▁▄█"
    assert sparkline([1, None, 1]) == "▁ ▁"
    assert sparkline([]) == ""


def test_dashboard_renders_panels_goals_and_alerts():
    from rich.console import Console

    board = Board(goals(Settings()))
    board.alerts = ["ShoppulseConversionRateBelowGoal conversion_rate is below its goal"]
    start = "2026-11-23T08:00:00.000Z"
    for _family, kpi in FAMILY_KPIS.items():
        board.on_record(_record(kpi, start, 0.0 if kpi == "conversion_rate" else 7), now=0)
    board.complete(now=1)
    console = Console(record=True, width=140, color_system=None)
    console.print(board.render("Kafka x", "checkout-outage", "keys: s, q"))
    text = console.export_text()
    for title in ("Funnel", "Sales", "Support", "Health", "Prometheus alerts", "checkout-outage"):
        assert title in text
    assert ">= 1.0%" in text and "ShoppulseConversionRateBelowGoal" in text


def test_a_goal_is_shown_only_on_the_row_it_applies_to():
    from rich.console import Console

    board = Board(goals(Settings()))
    start = "2026-11-23T08:00:00.000Z"
    for _family, kpi in FAMILY_KPIS.items():
        board.on_record(_record(kpi, start, 1), now=0)
    # The first-response goal (<= 1 h) is on p90: a 2 h p50 is not a breach of it.
    board.on_record(_record("first_response_seconds", start, 7200.0, quantile="0.5"), now=0)
    board.on_record(_record("first_response_seconds", start, 60.0, quantile="0.9"), now=0)
    board.complete(now=1)
    console = Console(record=True, width=140, color_system=None)
    console.print(board.render("Kafka x", "normal", "keys: s, q"))
    rows = {
        line.split("│")[1].strip().split("  ")[0]: line for line in console.export_text().splitlines() if "FRT" in line
    }
    assert "<= 1h" in rows["FRT p90"] and "<= 1h" not in rows["FRT p50"]
