"""Bounded load test of the local stack (`make loadtest`; not part of `make test`).

Opens CONNECTIONS WebSocket connections (one user each) at once, each asks TURNS questions in a
row with `!slow` answers, and checks every turn: the exact answer, `seq` contiguous from 1, one
terminal event, nothing after it. Prints p50/p99 time to first token and a verdict; exits 1 if
any turn was lost, duplicated, out of order or failed. Loopback only; every wait is bounded.

    python -m tests.load.loadtest --connections 200 --turns 3 --slow 2
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import List

from tests.support.stack import start_stack, stop_stack


@dataclass
class Results:
    ttft_ms: List[float] = field(default_factory=list)
    turns_ok: int = 0
    problems: List[str] = field(default_factory=list)


async def one_connection(url: str, token: str, user: str, turns: int, slow: float, results: Results) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(f"{url}/?token={token}", open_timeout=30, max_size=None, proxy=None) as ws:
            for index in range(turns):
                prompt = f"!slow {slow} turn {index} of {user}"
                sent = time.monotonic()
                await ws.send(json.dumps({"prompt": prompt, "requestId": f"{user}-{index}"}))
                events, first_chunk = [], None
                while True:
                    event = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                    events.append(event)
                    if event.get("type") == "chunk" and first_chunk is None:
                        first_chunk = time.monotonic()
                    if event.get("type") in ("done", "error"):
                        break
                problem = check_turn(events, f"You said: {prompt}")
                if problem:
                    results.problems.append(f"{user} turn {index}: {problem}")
                else:
                    results.turns_ok += 1
                    results.ttft_ms.append((first_chunk - sent) * 1000)
            try:  # nothing may follow the last terminal event (no second answer)
                extra = await asyncio.wait_for(ws.recv(), timeout=1.0)
                results.problems.append(f"{user}: unexpected frame after the last turn: {extra[:100]}")
            except asyncio.TimeoutError:
                pass
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
        results.problems.append(f"{user}: {type(exc).__name__}: {exc}")


def check_turn(events: list, expected: str) -> str:
    if not events or events[0].get("type") != "accepted":
        return f"no accepted first: {events[:1]}"
    rest = events[1:]
    if [e.get("seq") for e in rest] != list(range(1, len(rest) + 1)):
        return "seq not contiguous from 1"
    if rest[-1].get("type") != "done":
        return f"ended with {rest[-1]}"
    answer = "".join(e["text"] for e in rest if e.get("type") == "chunk")
    return "" if answer == expected else f"answer {answer[:60]!r} != {expected[:60]!r}"


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def run(stack, connections: int, turns: int, slow: float) -> Results:
    results = Results()
    tasks = [
        one_connection(stack.url, stack.token(f"load-{i}"), f"load-{i}", turns, slow, results) for i in range(connections)
    ]
    await asyncio.gather(*tasks)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds each answer takes to stream")
    args = parser.parse_args()
    stack = start_stack(WORKER_CONCURRENCY=str(args.connections), IDLE_TIMEOUT_S="600")
    started = time.monotonic()
    try:
        results = asyncio.run(run(stack, args.connections, args.turns, args.slow))
    finally:
        stop_stack(stack)
    elapsed = time.monotonic() - started
    expected = args.connections * args.turns
    print(f"connections={args.connections} turns/connection={args.turns} answer={args.slow}s wall={elapsed:.1f}s")
    print(f"turns whole, in order, exactly once: {results.turns_ok}/{expected}")
    if results.ttft_ms:
        print(
            f"time to first token: p50={statistics.median(results.ttft_ms):.0f} ms "
            f"p99={percentile(results.ttft_ms, 0.99):.0f} ms max={max(results.ttft_ms):.0f} ms"
        )
    print(f"problems: {len(results.problems)}")
    for problem in results.problems[:20]:
        print("  " + problem)
    return 0 if results.turns_ok == expected and not results.problems else 1


if __name__ == "__main__":
    sys.exit(main())
