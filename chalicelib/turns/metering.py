"""Per-user metering: each ended turn's tokens added to the user's totals, and the budgets they meet.

The worker adds a turn's usage after its terminal event went out (a ``TurnReport`` consumer), so
metering never delays an answer; ``$default`` compares the totals with the budgets before it
admits a new turn. A budget is checked when a turn starts: a turn admitted under budget runs to its
end, so turns already in flight (at most ``MAX_USER_TURNS_IN_FLIGHT``) may take a user past it.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

from chalicelib import protocol
from chalicelib.protocol import Event
from chalicelib.runtime import Runtime
from chalicelib.turns.outcomes import Failure, quota_exceeded
from chalicelib.turns.report import TurnReport
from chalicelib.usage import DAY, Period, periods, spent, wait_in_words


def meter(runtime: Any, report: TurnReport) -> None:
    """A report consumer: add the turn's tokens to its user's day and month (when it had any)."""
    usage = report.usage()
    if usage is not None:
        runtime.usage.add(report.user_id, usage["inputTokens"], usage["outputTokens"])


def _budgets(runtime: Runtime, now_ms: int) -> List[Tuple[Period, int]]:
    settings = runtime.settings
    day, month = periods(now_ms)
    return [(day, settings.user_daily_token_budget), (month, settings.user_monthly_token_budget)]


def over_budget(runtime: Runtime, user_id: str) -> Optional[Failure]:
    """Why the user may not start a turn now (a spent budget), or None. Reads only what is limited."""
    now = runtime.usage.clock()
    limited = [(period, budget) for period, budget in _budgets(runtime, now) if budget > 0]
    if not limited:
        return None
    refusal = spent(((period, runtime.usage.totals(user_id, period), budget) for period, budget in limited), now)
    if refusal is None:
        return None
    when, budget = ("today", "daily") if refusal.period.kind == DAY else ("this month", "monthly")
    return quota_exceeded(
        f"You have used {refusal.used:,} tokens {when} (UTC); your {budget} budget is {refusal.budget:,}. "
        f"It resets in {wait_in_words(refusal.retry_after_ms)}.",
        refusal.retry_after_ms,
    )


def usage_event(runtime: Runtime, user_id: str) -> Event:
    """The ``usage`` event: the user's totals and budgets this UTC day and month."""
    now = runtime.usage.clock()
    parts = []
    for period, budget in _budgets(runtime, now):
        totals = runtime.usage.totals(user_id, period)
        parts.append(
            protocol.usage_period(
                period.name, totals.input_tokens, totals.output_tokens, totals.turns, budget or None,
                period.resets_in_ms(now),
            )
        )
    day, month = parts
    return protocol.usage_event(day, month)
