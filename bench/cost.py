"""Cost per 1,000 turns: the relays' counted requests priced at AWS's public on-demand prices.

The counts come from the relay phase (``bench.relays``, medians of its runs): the posts in API
Gateway's 32 KB units, the worker's and ``$default``'s wall time, and for agentstream the DynamoDB,
SQS and EventBridge requests ``bench.worker`` counted. What the bench cannot count (Lambda's own SQS
poller, pooling ten turns in one execution) is a stated assumption below (``ASSUMPTIONS``), and the
prices are constants with their sources (``PRICES``): when AWS changes a price, change it here and
run ``python -m bench --report-only``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

REGION = "us-east-1"
PRICES_READ = "2026-12-03"

# USD per unit, us-east-1, on-demand, the first (lowest-volume) tier. ``source``: where the figure was
# read; ``confirmed``: whether AWS's own text gave the figure (AWS's pricing pages draw most rates with
# client-side scripts, so their stored text often carries the rules but not the numbers).
PRICES: Dict[str, Dict[str, Any]] = {
    "lambda_request": {
        "usd": 0.20 / 1e6, "unit": "request", "shown": "$0.20 per million requests",
        "source": "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html",
        "confirmed": True},
    "lambda_gb_s": {
        "usd": 0.0000166667, "unit": "GB-second", "shown": "$0.0000166667 per GB-second (x86, first 6 billion GB-s a month)",
        "source": "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html ($0.00001667); "
                  "the tier from https://aws.amazon.com/lambda/pricing/",
        "confirmed": True},
    "apigw_message": {
        "usd": 1.00 / 1e6, "unit": "message (32 KB)",
        "shown": "$1.00 per million messages (first billion a month), metered in 32 KB units",
        "source": "https://aws.amazon.com/api-gateway/pricing/ (the 32 KB metering; its rate table is drawn by script); "
                  "the rate as quoted by https://awsforengineers.com/blog/aws-api-gateway-pricing-explained",
        "confirmed": False},
    "apigw_minute": {
        "usd": 0.25 / 1e6, "unit": "connection minute", "shown": "$0.25 per million connection minutes",
        "source": "https://aws.amazon.com/api-gateway/pricing/ as quoted in "
                  "https://www.repost.aws/questions/QU7IqgooGeQmqudOsmzTw5YQ",
        "confirmed": False},
    "dynamodb_wru": {
        "usd": 0.625 / 1e6, "unit": "write request unit",
        "shown": "$0.625 per million write request units (Standard table class)",
        "source": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (the units; rates drawn by script); the rate after "
                  "the November 2024 cut as given by https://airbyte.com/data-engineering-resources/dynamodb-pricing",
        "confirmed": False},
    "dynamodb_rru": {
        "usd": 0.125 / 1e6, "unit": "read request unit", "shown": "$0.125 per million read request units",
        "source": "as for write request units", "confirmed": False},
    "sqs_request": {
        "usd": 0.40 / 1e6, "unit": "request (64 KB)",
        "shown": "$0.40 per million requests (standard queue, first 100 billion a month)",
        "source": "https://aws.amazon.com/sqs/pricing/ (not found in text); the rate as given by "
                  "https://cloudburn.io/blog/amazon-sqs-pricing (March 2026)",
        "confirmed": False},
    "eventbridge_event": {
        "usd": 1.00 / 1e6, "unit": "custom event (64 KB)", "shown": "$1.00 per million custom events",
        "source": "https://aws.amazon.com/eventbridge/pricing/ (the 64 KB rule); the rate as given by "
                  "https://cloudburn.io/blog/amazon-eventbridge-pricing (March 2026)",
        "confirmed": False},
}

# The model that prices the tokens, for scale (on-demand, per token).
MODEL: Dict[str, Any] = {
    "name": "Anthropic Claude Sonnet 4.5", "input_usd": 3.00 / 1e6, "output_usd": 15.00 / 1e6,
    "shown": "$3 per million input tokens, $15 per million output tokens",
    "source": "https://platform.claude.com/docs/en/docs/about-claude/pricing (Anthropic's list price, which Bedrock's "
              "on-demand price for Claude has matched; https://aws.amazon.com/bedrock/pricing/ draws its table by script)",
    "confirmed": False,
}

INPUT_TOKENS = 1_000  # per turn: the prompt and whatever the agent adds, as docs/capacity.md models it
CHARS_PER_TOKEN = 4  # for answers whose deltas are not token-sized (the 100,000-character answer)

ASSUMPTIONS: Dict[str, Any] = {
    "turns_per_execution": {"agentstream": 10, "post_once": 1, "post_per_delta": 1},
    "pooled_worker_mb": 1_024,  # "One worker, many turns": the size for WORKER_MAX_TURNS 10
    "default_mb_fallback": 256,  # websocket_message's memory when .chalice/config.json says nothing
    "event_source_requests": 2,  # Lambda's poller: one ReceiveMessage and one DeleteMessage per turn, at most
    "utilization": 0.7,  # the scale phase's sizing rule, applied to the baselines
    "rss_headroom": 1.5,
}


def output_tokens(agent: Dict[str, Any]) -> int:
    """The answer's output tokens: one per delta when the deltas are token-sized, else characters ÷ 4."""
    deltas, chars = int(agent.get("deltas") or 0), int(agent.get("characters") or 0)
    if deltas and chars / deltas <= 16:
        return deltas
    return math.ceil(chars / CHARS_PER_TOKEN)


def baseline_memory_mb(results: Dict[str, Any], relay: str) -> Dict[str, Any]:
    """The memory a one-turn baseline worker would be deployed with: the scale phase's rule (the
    smallest multiple of 64 MB, at least 128, holding the peak RSS × 1.5 and giving the CPU the relay
    used on the 400-delta answer at most 70 % of its share of a vCPU)."""
    from bench.scale import memory_for

    s = results["relays"]["stream"][relay]["summary"]
    share = (s["cpu_ms"] or 0) / (s["wall_ms"] or 1)
    peak = ((results.get("coldstart") or {}).get("handlers", {}).get("turn_worker") or {}).get("peak_rss_mb") or 0
    size = memory_for(peak, share, ASSUMPTIONS["utilization"], ASSUMPTIONS["rss_headroom"])
    return {"memory_mb": size["memory_mb"], "cpu_share": share, "bound": size["bound"]}


def per_turn(results: Dict[str, Any], workload: str) -> Dict[str, Dict[str, Any]]:
    """Each relay's billed quantities for one turn of ``workload``, and their cost in USD."""
    from bench.relays import RELAYS

    data = results["relays"][workload]
    ours = data["agentstream"]["summary"]
    default_mb = (results.get("memory_config") or {}).get("websocket_message") or ASSUMPTIONS["default_mb_fallback"]
    ask_s = (ours.get("ask_ms") or 0) / 1000  # every relay's ask costs a $default invocation this long
    out: Dict[str, Dict[str, Any]] = {}
    for relay in RELAYS:
        s = data[relay]["summary"]
        k = ASSUMPTIONS["turns_per_execution"][relay]
        ours_ = relay == "agentstream"
        worker_mb = ASSUMPTIONS["pooled_worker_mb"] if ours_ else baseline_memory_mb(results, relay)["memory_mb"]
        wall_s = (s.get("wall_ms") or 0) / 1000
        q: Dict[str, float] = {
            "lambda_request": 1 + 1 / k,
            "lambda_gb_s": default_mb / 1024 * ask_s + worker_mb / 1024 * wall_s / k,
            "apigw_message": (s.get("units") or 0) + 1 + (1 if ours_ else 0),  # + the ask; + `accepted`
            "apigw_minute": (ask_s + wall_s) / 60,
            "dynamodb_wru": ((s.get("ask_dynamodb_write_units") or 0) + (s.get("dynamodb_write_units") or 0)) if ours_ else 0,
            "dynamodb_rru": ((s.get("ask_dynamodb_read_units") or 0) + (s.get("dynamodb_read_units") or 0)) if ours_ else 0,
            "sqs_request": ((s.get("ask_sqs_requests") or 0) + ASSUMPTIONS["event_source_requests"]
                            + (s.get("sqs_requests") or 0) / k) if ours_ else 0,
            "eventbridge_event": (s.get("event_requests") or 0) if ours_ else 0,
        }
        usd = {item: amount * PRICES[item]["usd"] for item, amount in q.items()}
        tokens_out = output_tokens(s["agent"])
        bedrock = INPUT_TOKENS * MODEL["input_usd"] + tokens_out * MODEL["output_usd"]
        out[relay] = {"quantities": q, "usd": usd, "infrastructure_usd": sum(usd.values()), "bedrock_usd": bedrock,
                      "output_tokens": tokens_out, "worker_mb": worker_mb, "turns_per_execution": k,
                      "default_mb": default_mb, "ask_s": ask_s, "wall_s": wall_s,
                      "refill_polls": (s.get("sqs_requests") or 0) if ours_ else 0}
    return out


def workloads(results: Dict[str, Any]) -> List[str]:
    return [w for w in ("stream", "long", "big") if w in (results.get("relays") or {})]


def unconfirmed() -> List[str]:
    return [name for name, price in PRICES.items() if not price["confirmed"]] + ([] if MODEL["confirmed"] else ["model"])


def usd_per_1000(value: Optional[float]) -> str:
    """Dollars for 1,000 turns: cents above a dollar, three significant digits below."""
    if value is None:
        return "–"
    amount = value * 1000
    if amount == 0:
        return "$0"
    if amount >= 100:
        return f"${amount:,.0f}"
    if amount >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.{2 - math.floor(math.log10(amount))}f}"
