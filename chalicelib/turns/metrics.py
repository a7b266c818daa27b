"""Per-turn CloudWatch metrics, in embedded metric format: one log line per turn, no API call.

CloudWatch extracts the metrics from the worker's log line (Powertools ``EphemeralMetrics``), so
the hot path makes no ``PutMetricData`` request and a turn pays only for a ``print``. Dimensions
are stage and backend (and the error code on ``TurnErrors``), never a user or turn id: every
distinct dimension value is a billed metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from chalicelib.protocol import ErrorCode
from chalicelib.turns.report import TurnReport

NAMESPACE = "agentstream"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # a CloudWatch unit name: "Milliseconds", "Count"
    value: float


def turn_metrics(report: TurnReport) -> List[Metric]:
    """What one ended turn adds to the stage's metrics (dimensions: stage, backend)."""
    metrics = [Metric("Turns", "Count", 1)]
    timings = (("TimeToFirstTokenMs", report.first_token_ms), ("TurnDurationMs", report.duration_ms),
               ("QueueWaitMs", report.queue_ms))
    metrics += [Metric(name, "Milliseconds", value) for name, value in timings if value is not None and value >= 0]
    if report.outcome != ErrorCode.INTERRUPTED:  # an interrupted turn's messages were counted by its dead worker
        metrics.append(Metric("Messages", "Count", report.messages))
    tokens: tuple[tuple[str, Optional[int]], ...] = (("InputTokens", report.input_tokens), ("OutputTokens", report.output_tokens))
    metrics += [Metric(name, "Count", value) for name, value in tokens if value is not None]
    if report.outcome == ErrorCode.THROTTLED:
        metrics.append(Metric("BedrockThrottles", "Count", 1))
    if report.outcome == ErrorCode.INTERRUPTED:
        metrics.append(Metric("InterruptedTurns", "Count", 1))
    return metrics


def record_turn(runtime: Any, report: TurnReport) -> None:
    """Write the turn's metrics as EMF log lines (a second line carries the error code, if any)."""
    _flush(turn_metrics(report), report)
    if report.failed:
        _flush([Metric("TurnErrors", "Count", 1)], report, error_code=report.outcome)


def _flush(metrics: List[Metric], report: TurnReport, error_code: Optional[str] = None) -> None:
    from aws_lambda_powertools.metrics import EphemeralMetrics  # on the first report, not at import

    emf = EphemeralMetrics(namespace=NAMESPACE)
    emf.add_dimension("stage", report.stage)
    emf.add_dimension("backend", report.backend)
    if error_code is not None:
        emf.add_dimension("ErrorCode", error_code)
    for metric in metrics:
        emf.add_metric(name=metric.name, unit=metric.unit, value=metric.value)
    emf.flush_metrics()
