"""Per-user token budgets: the periods usage is counted in, and whether a budget is spent.

Pure functions of a clock reading (epoch milliseconds), so every rule is unit-tested without
mocks: periods are UTC calendar days and months, each ending (exclusive) where the next starts;
a budget of 0 means no limit. The totals live in the rate-limits table (``chalicelib.store.usage``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Optional, Tuple

DAY = "day"
MONTH = "month"


@dataclass(frozen=True)
class Period:
    kind: str  # DAY or MONTH
    name: str  # "2026-12-03" or "2026-12": the period's own name, in its item's key
    start_ms: int
    end_ms: int  # exclusive: when the next period starts, and this one's budget is new again

    def resets_in_ms(self, now_ms: int) -> int:
        """How long until the next period starts (at least 1 ms while this one runs)."""
        return max(1, self.end_ms - now_ms)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def day(now_ms: int) -> Period:
    """The UTC day ``now_ms`` falls in."""
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    start = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
    end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=timezone.utc)
    return Period(DAY, start.strftime("%Y-%m-%d"), _ms(start), _ms(end))


def month(now_ms: int) -> Period:
    """The UTC calendar month ``now_ms`` falls in."""
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)
    return Period(MONTH, start.strftime("%Y-%m"), _ms(start), _ms(end))


def periods(now_ms: int) -> Tuple[Period, Period]:
    """(day, month): every period a turn's usage is added to."""
    return day(now_ms), month(now_ms)


@dataclass(frozen=True)
class Totals:
    """One user's usage in one period."""

    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0  # turns whose usage the backend reported

    @property
    def tokens(self) -> int:
        """What a budget counts: input and output tokens together."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Spent:
    """A budget that is used up: refuse new turns until ``period`` ends."""

    period: Period
    used: int
    budget: int
    retry_after_ms: int


def spent(usage: Iterable[Tuple[Period, Totals, int]], now_ms: int) -> Optional[Spent]:
    """The budget that refuses a new turn, of (period, totals, budget) triples; None if none does.

    A budget of 0 (or less) is no limit. A budget is spent once the period's tokens reach it. When
    several are, the one that resets last decides: asking sooner would be refused again.
    """
    refusals = [
        Spent(period, totals.tokens, budget, period.resets_in_ms(now_ms))
        for period, totals, budget in usage
        if budget > 0 and totals.tokens >= budget
    ]
    return max(refusals, key=lambda refusal: refusal.retry_after_ms, default=None)


def wait_in_words(ms: int) -> str:
    """A wait a person reads at a glance: ``45 s``, ``12 min``, ``5 h 30 min``, ``3 d 4 h``."""
    seconds = max(1, -(-ms // 1000))  # rounded up: never promise a reset before it happens
    if seconds < 60:
        return f"{seconds} s"
    minutes = -(-seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
