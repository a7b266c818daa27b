"""Local stack capacity: how many connections can stream at once with chunk latency under 50 ms.

The whole local stack (``bench.capstack``: exactly what ``make run`` starts, in its own process)
against N WebSocket clients here (asyncio, all on 127.0.0.1). Each client connects with its own
user's token, and once all N are connected every client asks at the same moment for an answer of
the workload's shape (deltas of the same size and pace, only more of them, so the N turns overlap
despite being handed out one at a time by the SQS poller). A chunk's latency is the time the
client received it minus the time the agent (the recording emulator) sent the newest delta in it,
so it measures the stack, not the coalescing hold-back by design (reported apart, as delta
latency). N grows (10, 25, 50, ... up to 400) until the p95 chunk latency passes the limit or a
turn fails, then up to two steps between the last N that held and the first that did not.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

from bench.agent import AgentStream, stream_prompt
from bench.child import stop
from bench.client import Frame
from bench.metrics import chunk_latencies, delta_latencies, median, percentile
from bench.stack import JWT_SECRET, ROOT, clean_env

STEPS = (10, 25, 50, 100, 200, 400)


class StackProcess:
    def __init__(self, env: Dict[str, str], log: Path) -> None:
        self._log = open(log, "w")
        self._process = subprocess.Popen([sys.executable, "-m", "bench.capstack"], cwd=ROOT, env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the local stack did not start; see {log}")
        self.info = json.loads(line[len("READY "):])

    def recordings(self) -> Dict[str, AgentStream]:
        assert self._process.stdin is not None and self._process.stdout is not None
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        self._process.stdin.write(f"DUMP {path}\n")
        self._process.stdin.flush()
        if self._process.stdout.readline().strip() != "DUMPED":
            raise RuntimeError("the local stack did not dump its recordings")
        data = json.loads(Path(path).read_text())
        Path(path).unlink()
        return {key: AgentStream.from_json(value) for key, value in data.items()}

    def stop(self) -> None:
        stop(self._process, self._log, 60)


async def _clients(url: str, n: int, deltas: int, timeout: float) -> List[Dict[str, Any]]:
    from websockets.asyncio.client import connect

    from devserver.tokens import issue_token

    prompts = [stream_prompt(deltas) for _ in range(n)]
    results: List[Dict[str, Any]] = [{"tag": p.tag, "answer": p.answer, "frames": [], "error": None} for p in prompts]
    ready = asyncio.Event()
    settled = 0
    opening = asyncio.Semaphore(32)

    def arrived() -> None:
        nonlocal settled
        settled += 1
        if settled == n:
            ready.set()

    async def one(index: int) -> None:
        result, prompt = results[index], prompts[index]
        token = issue_token("cap-" + prompt.tag, JWT_SECRET, ttl_s=3600)
        counted = False
        try:
            async with opening:
                ws = await connect(f"{url}/?token={token}", max_size=None, open_timeout=60, compression=None,
                                   ping_interval=None)
            arrived()
            counted = True
            async with ws:
                await asyncio.wait_for(ready.wait(), 120)
                await ws.send(json.dumps({"prompt": prompt.text}))
                deadline = time.monotonic() + timeout
                while True:
                    raw = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.001))
                    at = time.monotonic()
                    data = raw.encode("utf-8") if isinstance(raw, str) else raw
                    event = json.loads(data)
                    result["frames"].append(Frame(at, len(data), event))
                    if event.get("type") in ("done", "error"):
                        if event.get("type") == "error":
                            result["error"] = f"error event: {event.get('code')}"
                        break
        except Exception as exc:  # noqa: BLE001 - a failed connection is a failed turn
            result["error"] = result["error"] or f"{type(exc).__name__}: {exc}"
        finally:
            if not counted:
                arrived()

    await asyncio.gather(*(one(i) for i in range(n)))
    return results


def _step(stack: StackProcess, n: int, deltas: int, delta_ms: float, threshold_ms: float, timeout: float) -> Dict[str, Any]:
    started = time.monotonic()
    results = asyncio.run(_clients(stack.info["url"], n, deltas, timeout))
    streams = stack.recordings()
    chunks: List[float] = []
    holds: List[float] = []
    intervals = []
    stretch = []
    posts = []
    errors = []
    for result in results:
        agent = streams.get(result["tag"])
        text_frames = [f for f in result["frames"] if f.text]
        text = "".join(f.text for f in text_frames)
        if result["error"] or agent is None or text != result["answer"]:
            errors.append(result["error"] or ("no agent stream" if agent is None else "answer incomplete"))
        if agent is None or not agent.sent:
            continue
        chunks += chunk_latencies(agent, text_frames)
        holds += delta_latencies(agent, text_frames)
        intervals.append((agent.first_at, agent.last_at))
        if len(agent.sent) > 1:
            stretch.append((agent.last_at - agent.first_at) / ((len(agent.sent) - 1) * delta_ms / 1000))
        posts.append(len([f for f in result["frames"] if f.type != "accepted"]))
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    concurrent = peak = 0
    for _, change in events:
        concurrent += change
        peak = max(peak, concurrent)
    p95 = percentile(chunks, 95)
    return {
        "connections": n,
        "ok_turns": n - len(errors),
        "errors": sorted(set(errors))[:5],
        "peak_concurrent_streams": peak,
        "chunk_latency_ms": {q: (percentile(chunks, v) or 0) * 1000 for q, v in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": max(chunks, default=0) * 1000},
        "delta_latency_ms": {"p50": (percentile(holds, 50) or 0) * 1000, "p95": (percentile(holds, 95) or 0) * 1000},
        "agent_stretch": median(stretch),
        "messages_per_turn": median(posts),
        "seconds": time.monotonic() - started,
        "held": not errors and p95 is not None and p95 * 1000 <= threshold_ms,
    }


def measure(deltas: int, delta_ms: float, first_token_ms: float, post_ms: float, flush_ms: int, threshold_ms: float,
            max_connections: int, budget_s: float, log: Path, say: Callable[[str], None]) -> Dict[str, Any]:
    steps = [n for n in STEPS if n <= max_connections] or [max_connections]
    env = clean_env(
        PORT="0", FIRST_TOKEN_DELAY_S=str(first_token_ms / 1000), CHUNK_DELAY_S=str(delta_ms / 1000),
        POST_LATENCY_S=str(post_ms / 1000), WORKER_CONCURRENCY=str(max(steps)), FLUSH_INTERVAL_MS=str(flush_ms),
        JWT_SECRET=JWT_SECRET, RATE_LIMIT_PER_S="1000", RATE_LIMIT_BURST="100000", MAX_TURNS_IN_FLIGHT="1000",
        DEVSERVER_LOG_LEVEL="WARNING",
    )
    timeout = first_token_ms / 1000 + deltas * delta_ms / 1000 * 4 + 60
    began = time.monotonic()
    stack = StackProcess(env, log)
    results: List[Dict[str, Any]] = []
    try:
        for n in steps:
            results.append(_step(stack, n, deltas, delta_ms, threshold_ms, timeout))
            say("  " + _brief(results[-1]))
            if not results[-1]["held"] or time.monotonic() - began > budget_s:
                break
        for _ in range(2):  # narrow down between the last N that held and the first that did not
            held = [r["connections"] for r in results if r["held"]]
            failed = [r["connections"] for r in results if not r["held"]]
            if not held or not failed or min(failed) - max(held) <= 3 or time.monotonic() - began > budget_s:
                break
            results.append(_step(stack, (max(held) + min(failed)) // 2, deltas, delta_ms, threshold_ms, timeout))
            say("  " + _brief(results[-1]))
    finally:
        stack.stop()
    results.sort(key=lambda r: r["connections"])
    held = [r["connections"] for r in results if r["held"]]
    failed = [r["connections"] for r in results if not r["held"]]
    return {
        "steps": results,
        "holds": max(held, default=0),
        "first_failure": min(failed, default=None),
        "threshold_ms": threshold_ms,
        "deltas": deltas,
        "delta_ms": delta_ms,
        "post_ms": post_ms,
    }


def _brief(step: Dict[str, Any]) -> str:
    c = step["chunk_latency_ms"]
    verdict = "held" if step["held"] else "did not hold"
    return (f"{step['connections']} connections ({step['peak_concurrent_streams']} streaming at once): chunk latency "
            f"p50 {c['p50']:.0f} / p95 {c['p95']:.0f} / max {c['max']:.0f} ms, {step['ok_turns']} turns ok, "
            f"agent pace x{step['agent_stretch'] or 0:.2f}: {verdict}"
            + (f" ({'; '.join(step['errors'])})" if step["errors"] else ""))
