"""The periods usage is counted in and the budget rule: pure functions of a clock reading."""
from datetime import datetime, timezone

import pytest

from chalicelib.usage import DAY, MONTH, Totals, day, month, periods, spent, wait_in_words


def ms(*parts: int) -> int:
    """Epoch milliseconds of a UTC date and time."""
    return int(datetime(*parts, tzinfo=timezone.utc).timestamp() * 1000)


HOUR = 3_600_000
NOW = ms(2026, 12, 3, 18, 30)  # 5 h 30 min before midnight, 28 d 5 h 30 min before the new year


def test_a_day_is_a_utc_calendar_day():
    today = day(NOW)
    assert (today.kind, today.name) == (DAY, "2026-12-03")
    assert (today.start_ms, today.end_ms) == (ms(2026, 12, 3), ms(2026, 12, 4))
    assert today.resets_in_ms(NOW) == 5 * HOUR + 30 * 60_000


def test_a_day_starts_at_midnight_exactly_and_ends_before_the_next():
    assert day(ms(2026, 12, 4)).name == "2026-12-04"
    assert day(ms(2026, 12, 4) - 1).name == "2026-12-03"
    assert day(ms(2026, 12, 4) - 1).resets_in_ms(ms(2026, 12, 4) - 1) == 1


def test_a_month_is_a_utc_calendar_month_and_december_ends_in_the_new_year():
    december = month(NOW)
    assert (december.kind, december.name) == (MONTH, "2026-12")
    assert (december.start_ms, december.end_ms) == (ms(2026, 12, 1), ms(2027, 1, 1))
    assert december.resets_in_ms(NOW) == 28 * 24 * HOUR + 5 * HOUR + 30 * 60_000
    assert month(ms(2027, 1, 1)).name == "2027-01"


@pytest.mark.parametrize("year, days", [(2026, 28), (2028, 29), (2100, 28)])
def test_february_has_the_days_of_its_year(year, days):
    february = month(ms(year, 2, 10))
    assert february.end_ms - february.start_ms == days * 24 * HOUR
    assert day(ms(year, 2, days, 12)).end_ms == ms(year, 3, 1) == february.end_ms


def test_the_last_day_of_a_month_resets_both_at_once():
    today, this_month = periods(ms(2026, 6, 30, 23))
    assert today.end_ms == this_month.end_ms == ms(2026, 7, 1)


def test_the_period_follows_the_clock_not_the_machine_s_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local date a day ahead
    import time

    time.tzset()
    try:
        assert day(ms(2026, 12, 3, 18)).name == "2026-12-03"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_budget_of_zero_is_no_limit():
    today, this_month = periods(NOW)
    lots = Totals(10**9, 10**9, 10**6)
    assert spent([(today, lots, 0), (this_month, lots, 0)], NOW) is None


def test_a_budget_is_spent_once_input_and_output_tokens_reach_it():
    today = day(NOW)
    assert spent([(today, Totals(60, 39, 2), 100)], NOW) is None
    refusal = spent([(today, Totals(60, 40, 2), 100)], NOW)
    assert refusal is not None
    assert (refusal.period, refusal.used, refusal.budget) == (today, 100, 100)
    assert refusal.retry_after_ms == 5 * HOUR + 30 * 60_000


def test_the_budget_that_resets_last_decides():
    today, this_month = periods(NOW)
    both = spent([(today, Totals(100, 0), 100), (this_month, Totals(500, 0), 500)], NOW)
    assert both is not None and both.period == this_month
    assert both.retry_after_ms == this_month.end_ms - NOW
    only_month = spent([(today, Totals(100, 0), 1000), (this_month, Totals(500, 0), 500)], NOW)
    assert only_month is not None and only_month.period == this_month
    only_day = spent([(today, Totals(100, 0), 100), (this_month, Totals(100, 0), 500)], NOW)
    assert only_day is not None and only_day.retry_after_ms == today.end_ms - NOW


@pytest.mark.parametrize(
    "wait, words",
    [(1, "1 s"), (1500, "2 s"), (59_000, "59 s"), (60_000, "1 min"), (61_000, "2 min"), (HOUR, "1 h"),
     (5 * HOUR + 30 * 60_000, "5 h 30 min"), (24 * HOUR, "1 d"), (28 * 24 * HOUR + 5 * HOUR + 1, "28 d 5 h")],
)
def test_waits_in_words_never_promise_a_reset_too_soon(wait, words):
    assert wait_in_words(wait) == words
