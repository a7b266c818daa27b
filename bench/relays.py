"""The side-by-side runs: the same agent, the same management API, three relays.

Each relay runs in its own warm worker process (``bench.worker``), like a warm Lambda container;
the agent (recording Bedrock emulator), API Gateway (emulator, management API with a fixed post
latency) and the clients (websockets, timestamping each frame) run here. Runs are interleaved
(agentstream, post-once, post-per-delta, agentstream, ...) so drift in the machine's load is
shared. The long answer runs the three relays at once, one connection each.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from bench.agent import Prompt, big_prompt, stream_prompt
from bench.child import JsonLinesChild
from bench.client import Receiver, terminal_received, text_length_reached
from bench.metrics import measure_turn, representative, summarize
from bench.stack import Edge, MotoServer

RELAYS = ("agentstream", "post_once", "post_per_delta")
LABELS = {"agentstream": "agentstream", "post_once": "post-once", "post_per_delta": "post-per-delta"}


@dataclass
class Workload:
    deltas: int = 400
    delta_ms: float = 5.0
    first_token_ms: float = 300.0
    post_ms: float = 20.0
    flush_ms: int = 50
    runs: int = 5
    long_s: float = 60.0
    long_deltas: int = 400
    big_chars: int = 100_000
    big_runs: int = 3


class WorkerProcess(JsonLinesChild):
    """One ``python -m bench.worker`` process serving one relay."""

    def __init__(self, relay: str, env: Dict[str, str], log: Path) -> None:
        self.relay = relay
        super().__init__(["-m", "bench.worker"], env, log, relay, ready_timeout=60)

    def run(self, job: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        return super().run({**job, "relay": self.relay}, timeout)


def turn(edge: Edge, worker: WorkerProcess, prompt: Prompt, timeout: float, flush_ms: float = 50) -> Dict[str, Any]:
    """One measured turn of ``worker``'s relay on a fresh connection."""
    receiver = Receiver(edge.gateway.ws_url, prompt.tag)
    try:
        connection_id = edge.connection_id(prompt.tag)
        job = {"id": prompt.tag, "connection_id": connection_id, "prompt": prompt.text, "tag": prompt.tag,
               "user": "user-" + prompt.tag}
        result = worker.run(job, timeout)
        if "error" in result:
            raise RuntimeError(f"the {worker.relay} worker failed: {result['error']} (see {worker.log})")
        done = terminal_received if worker.relay == "agentstream" else text_length_reached(len(prompt.answer))
        receiver.wait(done, timeout=10)
        agent = edge.bedrock.stream(prompt.tag)
    finally:
        receiver.close()
    return measure_turn(worker.relay, prompt.answer, agent, receiver.frames, result, flush_ms / 1000)


def compare(moto: MotoServer, workload: Workload, logs: Path, say: Callable[[str], None]) -> Dict[str, Any]:
    """Every workload, every relay; returns runs and summaries per workload."""
    w = workload
    edge = Edge(w.first_token_ms / 1000, w.delta_ms / 1000, w.post_ms / 1000).start()
    # Turn events on, as a deployed stage has them (the template's TurnEventBus defaults to `default`):
    # one PutEvents per ended turn, to moto's EventBridge, counted for the cost per 1,000 turns.
    env = edge.app_env(moto, FLUSH_INTERVAL_MS=str(w.flush_ms), TURN_EVENT_BUS="default",
                       AWS_ENDPOINT_URL_EVENTBRIDGE=moto.url)
    workers = {relay: WorkerProcess(relay, env, logs / f"worker-{relay}.log") for relay in RELAYS}
    results: Dict[str, Any] = {}
    try:
        for worker in workers.values():  # warm each container: clients, lazy imports, connections
            turn(edge, worker, stream_prompt(20), timeout=60)

        stream_timeout = 30 + w.deltas * (w.delta_ms + w.post_ms * 4) / 1000
        runs: Dict[str, List[Dict[str, Any]]] = {relay: [] for relay in RELAYS}
        for index in range(w.runs):
            for relay in RELAYS:
                result = turn(edge, workers[relay], stream_prompt(w.deltas), stream_timeout, w.flush_ms)
                runs[relay].append(result)
                say(f"  stream run {index + 1}/{w.runs} {LABELS[relay]:15} " + _brief(result))
        results["stream"] = _pack(runs)

        big_runs: Dict[str, List[Dict[str, Any]]] = {relay: [] for relay in RELAYS}
        for index in range(w.big_runs):
            for relay in RELAYS:
                result = turn(edge, workers[relay], big_prompt(w.big_chars), 120, w.flush_ms)
                big_runs[relay].append(result)
                say(f"  big run {index + 1}/{w.big_runs} {LABELS[relay]:15} " + _brief(result))
        results["big"] = _pack(big_runs)

        if w.long_s > 0:
            say(f"  long answer: {w.long_s:g} s, the three relays at once")
            long_runs: Dict[str, List[Dict[str, Any]]] = {}
            failures: List[BaseException] = []

            def run_long(relay: str) -> None:
                prompt = stream_prompt(w.long_deltas, slow_s=w.long_s)
                try:
                    long_runs[relay] = [turn(edge, workers[relay], prompt, w.long_s + 120, w.flush_ms)]
                except BaseException as exc:  # noqa: BLE001 - raised below, in the bench's own thread
                    failures.append(exc)

            threads = [threading.Thread(target=run_long, args=(relay,)) for relay in RELAYS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if failures:
                raise failures[0]
            for relay in RELAYS:
                say(f"  long {LABELS[relay]:15} " + _brief(long_runs[relay][0]))
            results["long"] = _pack(long_runs)
    finally:
        for worker in workers.values():
            worker.stop()
        edge.stop()
    return results


def _pack(runs: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    return {
        relay: {"summary": summarize(items), "representative": representative(items),
                "runs": [{k: v for k, v in r.items() if k != "curve"} for r in items]}
        for relay, items in runs.items()
    }


def _brief(result: Dict[str, Any]) -> str:
    def f(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.0f}"

    status = "ok" if result["ok"] else f"FAILED ({result['error']})"
    return (
        f"first-token +{f(result['ttft_overhead_ms'])} ms, end lag {f(result['eos_lag_ms'])} ms, "
        f"{result['messages']} messages, cpu {f(result['cpu_ms'])} ms: {status}"
    )
