"""Figures from one turn: what the agent sent when, and what the client received when."""
from __future__ import annotations

import math
import statistics
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from bench.agent import AgentStream
from bench.client import Frame

FRAME_BILLING_BYTES = 32 * 1024  # API Gateway meters messages in 32 KB units


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th percentile (0-100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def billing_units(size: int) -> int:
    return max(1, -(-size // FRAME_BILLING_BYTES))


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else seconds * 1000


def _count(requests: Optional[Dict[str, Dict[str, int]]], service: str) -> Optional[int]:
    """All requests one client made (``{service: {operation: count}}``), or None when not counted."""
    if not requests or service not in requests:
        return None
    return sum(requests[service].values())


def carriers(agent: AgentStream, text_frames: List[Frame]) -> Iterator[Tuple[float, int]]:
    """For every delta that arrived: when the agent sent it, and the index of the frame that
    completed it at the client (text is matched by length, in order)."""
    j, received, sent_total = 0, 0, 0
    for sent_at, chars in agent.sent:
        sent_total += chars
        while j < len(text_frames) and received < sent_total:
            received += len(text_frames[j].text)
            j += 1
        if received < sent_total:
            return  # the rest never arrived
        yield sent_at, j - 1


def delta_latencies(agent: AgentStream, text_frames: List[Frame]) -> List[float]:
    """For every delta: when the client had it minus when the agent sent it (seconds).

    Includes any time the relay held the delta back to coalesce it with later ones.
    """
    return [text_frames[index].at - sent_at for sent_at, index in carriers(agent, text_frames)]


def holds(agent: AgentStream, text_frames: List[Frame], starts: List[float], busy_until: List[Optional[float]],
          interval: float) -> Tuple[List[float], List[float]]:
    """For every delta: how long it waited in the worker before the post that carried it started.

    Returns two lists (seconds): the whole wait (post start minus the agent's send, so it includes
    the ~1 ms from the agent's socket through boto3's parser into the relay), and how much longer
    it waited than ``interval`` or, if later, than the end of the previous post (``busy_until``:
    when the client had the previous message, about when that post returned). A relay that posts
    one message at a time must wait for the post in flight; beyond that, agentstream promises to
    hold text back no longer than its flush interval.
    """
    whole: List[float] = []
    excess: List[float] = []
    for sent_at, index in carriers(agent, text_frames):
        start, busy = starts[index], busy_until[index]
        wait = start - sent_at
        whole.append(wait)
        excess.append(max(0.0, wait - max(interval, (busy - sent_at) if busy is not None else 0.0)))
    return whole, excess


def chunk_latencies(agent: AgentStream, text_frames: List[Frame]) -> List[float]:
    """For every text frame: when the client had it minus when the agent sent its newest delta."""
    out: List[float] = []
    k, sent_total, received = 0, 0, 0
    newest: Optional[float] = None
    for frame in text_frames:
        received += len(frame.text)
        while k < len(agent.sent) and sent_total + agent.sent[k][1] <= received:
            sent_total += agent.sent[k][1]
            newest = agent.sent[k][0]
            k += 1
        if newest is not None:
            out.append(frame.at - newest)
    return out


def measure_turn(relay: str, expected: str, agent: AgentStream, frames: List[Frame], worker: Dict[str, Any],
                 flush_s: float = 0.05) -> Dict[str, Any]:
    """Every figure of one turn; times in milliseconds."""
    posted = [f for f in frames if f.type != "accepted"]  # `accepted` belongs to the ask, not the turn
    text_frames = [f for f in posted if f.text]
    text = "".join(f.text for f in text_frames)
    first_text = text_frames[0].at if text_frames else None
    last_text = None
    received = 0
    for frame in text_frames:
        received += len(frame.text)
        if received >= len(expected):
            last_text = frame.at
            break
    terminal = next((f for f in posted if f.type in ("done", "error")), None)
    deltas = delta_latencies(agent, text_frames)
    chunks = chunk_latencies(agent, text_frames)
    starts = worker.get("post_starts") or []
    held: List[float] = []
    excess: List[float] = []
    post_times: List[float] = []
    if len(starts) == len(posted):  # one request per message (no retries): pair them in order
        previous_done: List[Optional[float]] = [None] + [f.at for f in posted[:-1]]
        text_starts = [s for s, f in zip(starts, posted) if f.text]
        text_busy = [b for b, f in zip(previous_done, posted) if f.text]
        held, excess = holds(agent, text_frames, text_starts, text_busy, flush_s)
        post_times = [f.at - s for s, f in zip(starts, posted)]
    origin = agent.requested_at
    cumulative, curve_client = 0, []
    for frame in text_frames:
        cumulative += len(frame.text)
        curve_client.append((frame.at - origin, cumulative))
    cumulative, curve_agent = 0, []
    for sent_at, chars in agent.sent:
        cumulative += chars
        curve_agent.append((sent_at - origin, cumulative))
    return {
        "relay": relay,
        "ok": text == expected and worker.get("error") is None and not worker.get("failures"),
        "error": worker.get("error") or (None if text == expected else f"text differs ({len(text)} of {len(expected)} characters)"),
        "ttft_overhead_ms": _ms(first_text - agent.first_at) if first_text is not None else None,
        "eos_lag_ms": _ms(last_text - agent.last_at) if last_text is not None else None,
        "terminal_lag_ms": _ms(terminal.at - agent.last_at) if terminal is not None else None,
        "messages": len(posted),
        "text_messages": len(text_frames),
        "units": sum(billing_units(f.size) for f in posted),
        "bytes": sum(f.size for f in posted),
        "max_message_bytes": max((f.size for f in posted), default=0),
        "cpu_ms": _ms(worker.get("cpu_s")),
        "dynamodb_requests": (worker.get("dynamodb") or {}).get("requests"),
        "dynamodb_write_units": (worker.get("dynamodb") or {}).get("write_units"),
        "dynamodb_read_units": (worker.get("dynamodb") or {}).get("read_units"),
        "dynamodb": worker.get("dynamodb"),
        # What else the turn cost (agentstream's only: the baselines make none of these requests).
        "sqs_requests": _count(worker.get("requests"), "sqs"),
        "event_requests": _count(worker.get("requests"), "events"),
        "ask_ms": _ms((worker.get("ask") or {}).get("wall_s")),
        "ask_dynamodb_requests": ((worker.get("ask") or {}).get("dynamodb") or {}).get("requests"),
        "ask_dynamodb_write_units": ((worker.get("ask") or {}).get("dynamodb") or {}).get("write_units"),
        "ask_dynamodb_read_units": ((worker.get("ask") or {}).get("dynamodb") or {}).get("read_units"),
        "ask_sqs_requests": _count((worker.get("ask") or {}).get("requests"), "sqs"),
        "ask": worker.get("ask"),
        "requests": worker.get("requests"),
        "wall_ms": _ms(worker.get("wall_s")),
        "delta_latency_ms": {
            "p50": _ms(percentile(deltas, 50)), "p95": _ms(percentile(deltas, 95)), "max": _ms(max(deltas, default=None)),
        },
        "chunk_latency_ms": {
            "p50": _ms(percentile(chunks, 50)), "p95": _ms(percentile(chunks, 95)), "max": _ms(max(chunks, default=None)),
        },
        "first_hold_ms": _ms(held[0]) if held else None,
        "hold_ms": {"p50": _ms(percentile(held, 50)), "p95": _ms(percentile(held, 95)), "max": _ms(max(held, default=None))},
        "excess_hold_ms": {"p50": _ms(percentile(excess, 50)), "p95": _ms(percentile(excess, 95)),
                           "max": _ms(max(excess, default=None))},
        "post_ms": {"p50": _ms(percentile(post_times, 50)), "p95": _ms(percentile(post_times, 95)),
                    "max": _ms(max(post_times, default=None))},
        "agent": {
            "deltas": len(agent.sent),
            "characters": agent.characters,
            "first_ms": _ms(agent.first_at - origin),
            "last_ms": _ms(agent.last_at - origin),
        },
        "curve": {"agent": curve_agent, "client": curve_client},
    }


SCALARS = ("ttft_overhead_ms", "eos_lag_ms", "terminal_lag_ms", "messages", "text_messages", "units", "bytes",
           "max_message_bytes", "cpu_ms", "wall_ms", "first_hold_ms", "dynamodb_requests", "dynamodb_write_units",
           "dynamodb_read_units", "sqs_requests", "event_requests", "ask_ms", "ask_dynamodb_requests",
           "ask_dynamodb_write_units", "ask_dynamodb_read_units", "ask_sqs_requests")


def summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Medians over runs (p50), with the spread of the two latency figures."""
    summary: Dict[str, Any] = {"runs": len(runs), "ok": all(r["ok"] for r in runs)}
    summary["errors"] = [r["error"] for r in runs if r.get("error")]
    for key in SCALARS:
        summary[key] = median([r[key] for r in runs if r.get(key) is not None])
    for key in ("ttft_overhead_ms", "eos_lag_ms"):
        values = [r[key] for r in runs if r.get(key) is not None]
        summary[key + "_min"] = min(values, default=None)
        summary[key + "_max"] = max(values, default=None)
    for key in ("delta_latency_ms", "chunk_latency_ms", "hold_ms", "excess_hold_ms", "post_ms"):
        summary[key] = {
            "p50": median([r[key]["p50"] for r in runs if r[key]["p50"] is not None]),
            "p95": median([r[key]["p95"] for r in runs if r[key]["p95"] is not None]),
            "max": max((r[key]["max"] for r in runs if r[key]["max"] is not None), default=None),
        }
    summary["agent"] = {
        key: median([r["agent"][key] for r in runs]) for key in ("deltas", "characters", "first_ms", "last_ms")
    }
    return summary


def representative(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The run whose end-of-stream lag is the median one (for the plot)."""
    ordered = sorted((r for r in runs if r.get("eos_lag_ms") is not None), key=lambda r: r["eos_lag_ms"])
    return ordered[len(ordered) // 2] if ordered else (runs[0] if runs else {})
