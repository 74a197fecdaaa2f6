"""Goals: catalogue defaults, overrides from the `goals` setting, and clear errors."""

import pytest

from shoppulse.errors import SettingsError
from shoppulse.settings import Settings
from shoppulse.streams.goals import format_value, goals
from shoppulse.streams.kpis import CATALOGUE


def test_defaults_come_from_the_catalogue():
    resolved = goals(Settings())
    assert set(resolved) == {k.key for k in CATALOGUE if k.goal}
    conversion = resolved["conversion_rate"]
    assert conversion.met(0.02) is True and conversion.met(0.0) is False and conversion.met(None) is None
    assert resolved["first_response_seconds"].series == {"quantile": "0.9"}
    assert resolved["first_response_seconds"].applies_to({"quantile": "0.9"})
    assert not resolved["first_response_seconds"].applies_to({"quantile": "0.9", "channel": "email"})


def test_overrides_replace_add_and_remove_goals():
    settings = Settings(goals={"conversion_rate": {"min": 0.05}, "orders": {"min": 1}, "bounce_rate": {}})
    resolved = goals(settings)
    assert resolved["conversion_rate"].target == 0.05 and resolved["conversion_rate"].op == ">="
    assert resolved["orders"].met(0) is False
    assert "bounce_rate" not in resolved


@pytest.mark.parametrize(
    "raw, named",
    [
        ({"no_such_kpi": {"min": 1}}, "no_such_kpi"),
        ({"orders": {"above": 1}}, "goals.orders"),
        ({"orders": {"min": 1, "max": 2}}, "goals.orders"),
        ({"orders": {"min": "many"}}, "goals.orders.min"),
        ({"top_products": {"min": 1}}, "top_products"),
    ],
)
def test_bad_goals_name_the_key(raw, named):
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        goals(Settings(goals=raw))


def test_format_value():
    assert format_value("conversion_rate", 0.0123) == "1.2%"
    assert format_value("first_response_seconds", 5400) == "1h 30m"
    assert format_value("orders", 1234) == "1,234"
    assert format_value("conversion_rate", None) == "n/a"
