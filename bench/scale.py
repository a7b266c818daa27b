"""One worker, many turns: what a warm turn-worker container costs streaming 1, 5, 10 and 20 turns at once.

``python -m bench.scale`` (or ``python -m bench --only scale``) runs this phase alone; ``--quick``
makes it a smoke run (one round, 6 s answers). ``python -m bench`` runs it after cold start.

Method. Each level K runs in a worker process of its own (``python -m bench.scale --serve``), a
warm Lambda container: it imports ``app`` and invokes ``turn_worker`` from ``app.handler_map``,
unchanged, with one SQS event of K records, against moto (DynamoDB, SQS), the recording Bedrock
emulator and the API Gateway emulator with the relay phase's timings (300 ms first token, 20 ms per
post, 50 ms flush). One process per level because a process's peak memory (``VmHWM``) never
comes down: a container that once ran 20 turns would report their peak for every later level.
Setup per run (not timed): K WebSocket clients connect here, and in the worker ``websocket_connect``
and ``websocket_message`` (one user each) record the connections and queue the K turns, which the
worker receives as one batch. Timed: the one ``turn_worker`` invocation, as Lambda invokes it:
its process CPU (``time.process_time``: every thread of the container), its wall time, and each
post's start (a botocore ``before-send`` observer per connection). Each process is warmed by one
invocation of K short turns first. Levels run interleaved, round after round (the baseline twice a
round), so drift in the machine's load is shared.

- The answer: 600 token-sized deltas over 20 s (30 tokens/s, the turn ``docs/capacity.md`` models),
  the same for every turn. The K turns of a batch start (and end) together. The default K also runs
  "joining": half its turns in the batch, the other half queued a third of the way in and taken by
  the worker's refills while the first half streams (``10j`` in the results).
- K = 1 is the baseline, one turn per execution: ``WORKER_MAX_TURNS=1``, so it never polls for more.
  K = 5 and 10 run with the default ``WORKER_MAX_TURNS`` (10; K = 5 keeps refill-polling the empty
  queue, as a half-full execution does); K = 20 with ``WORKER_MAX_TURNS=20`` (on AWS a batch of 10
  plus 10 taken from the queue: Lambda's SQS batches hold at most 10 without a batching window).
- Per turn, against the agent's own clock: first-token overhead (client's first text minus the
  agent's first delta), end lag (the client's ``done`` frame, and its last text, minus the agent's
  last delta), text latency, and start (the agent's request minus the invocation's start, or minus
  the moment a joining turn was queued).

Derived (``derive``): a Lambda memory size per level by a rule, the smallest multiple of 64 MB (at
least 128) that holds the peak RSS with 50 % headroom and gives the CPU the level used at most 70 %
of its share of a vCPU (1,769 MB is one vCPU, pro rata below); GB-seconds per turn = memory × the
invocation's duration ÷ turns in it; executions at 100, 1,000 and 10,000 turns in flight = N for
one turn per execution, ceil(N ÷ 10) for the default.

Checked (``_check``), where this machine lets the bench create a cgroup (root; cgroup v1 ``cpu``, or
v2 with ``cpu`` delegated): K = 1 and the default again, each worker held by a CFS quota to the CPU
share Lambda gives a memory size (100 ms period): the rule's size, the configured ``turn_worker``
size (``.chalice/config.json``), a few in between and, for K = 1, the 128 MB minimum. A size passes
(``passes``) when every turn is whole, the first-token overhead is at most 50 ms at p50 and the cap
adds at most 50 ms to the end lag and to the text latency of the same level uncapped; the
comparison then uses the smallest size that passed (``recommended``).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from bench.child import JsonLinesChild

LAMBDA_MB_PER_VCPU = 1769  # one vCPU at 1,769 MB, CPU in proportion to memory below (AWS)
MEMORY_STEP_MB = 64
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
IN_FLIGHT = (100, 1_000, 10_000)


@dataclass
class ScaleWorkload:
    levels: Tuple[int, ...] = (1, 5, 10, 20)
    default_turns: int = 10  # WORKER_MAX_TURNS and TURN_WORKER_BATCH_SIZE, the defaults
    answer_s: float = 20.0
    deltas: int = 600
    first_token_ms: float = 300.0
    post_ms: float = 20.0
    flush_ms: int = 50
    rounds: int = 4
    baseline_per_round: int = 2  # K = 1 gives one turn a run: run it more often
    staggered: bool = True  # also run the default with half its turns joining a third into the answer
    check_runs: int = 2  # runs per memory size under a CPU cap (K = 1: twice as many)
    cpu_cap: bool = True
    cfs_period_us: int = 100_000
    utilization: float = 0.7  # the most of its vCPU share a worker may need on average
    rss_headroom: float = 1.5
    configured_mb: int = 512  # turn_worker's lambda_memory_size, read from .chalice/config.json


# ---- the worker process (a warm container) ----------------------------------------------------

class _PostsByConnection:
    """When each PostToConnection request was handed to the network, per connection id."""

    def __init__(self, client: Any) -> None:
        self.starts: Dict[str, List[float]] = {}
        self._lock = threading.Lock()
        client.meta.events.register("before-send.apigatewaymanagementapi.PostToConnection", self._sent)

    def _sent(self, request: Any = None, **_: Any) -> None:
        at = time.monotonic()
        url = getattr(request, "url", "") or ""
        connection_id = unquote(url.rsplit("/@connections/", 1)[-1].split("?", 1)[0]) if "@connections/" in url else ""
        with self._lock:
            self.starts.setdefault(connection_id, []).append(at)

    def reset(self) -> None:
        with self._lock:
            self.starts = {}


def _status_mb(field_name: str) -> float:
    """A memory figure of this process from /proc/self/status (``VmHWM`` peak, ``VmRSS`` now), in MB.

    Not ``ru_maxrss``: Linux carries the forking parent's peak into a child across ``exec``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _join_later(ask: Callable[[Dict[str, Any]], None], turns: List[Dict[str, Any]], after_s: float,
                queued: Dict[str, float], joining: Dict[str, Any]) -> None:
    """Queue ``turns`` ``after_s`` from now, noting when each was queued and this thread's CPU."""
    time.sleep(after_s)
    cpu = time.thread_time()
    try:
        for turn in turns:
            ask(turn)
            queued[turn["connection_id"]] = time.monotonic()
    except Exception as exc:  # noqa: BLE001 - reported with the job's answer
        joining["error"] = f"{type(exc).__name__}: {exc}"
    joining["cpu_s"] = time.thread_time() - cpu


def serve() -> int:
    """``python -m bench.scale --serve``: one warm container; one JSON job per stdin line, one answer each."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the app logs to stdout, as on Lambda: send those lines to stderr
    import app as app_module
    from chalicelib.aws import management_endpoint
    from chalicelib.runtime import get_runtime

    from bench import events

    runtime = get_runtime()
    handlers = app_module.app.handler_map
    url = runtime.settings.turn_queue_url
    arn = runtime.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    posts = _PostsByConnection(runtime.clients.management(management_endpoint(runtime.settings, events.API_ID,
                                                                              events.STAGE)))
    answers.write(json.dumps({"ready": True, "pid": os.getpid(), "rss_mb": _status_mb("VmRSS")}) + "\n")

    def ask(turn: Dict[str, Any]) -> None:
        """What API Gateway and ``$default`` do before the worker sees a turn: the turn is queued."""
        reply = handlers["websocket_connect"](events.connect(turn["connection_id"], events.token(turn["user"])),
                                              events.context("websocket_connect"))
        if (reply or {}).get("statusCode", 200) != 200:
            raise RuntimeError(f"$connect refused a bench connection: {reply}")
        handlers["websocket_message"](events.message(turn["connection_id"], {"prompt": turn["prompt"]}),
                                      events.context("websocket_message"))

    for line in sys.stdin:
        job = json.loads(line)
        try:
            began = time.monotonic()
            for turn in job["turns"]:
                ask(turn)
            messages = events.receive_turns(runtime.clients.sqs, url, len(job["turns"]))
            event = events.sqs(messages, arn, runtime.settings.region)
            context = events.context("turn_worker", job.get("memory_mb", 128))
            setup_s = time.monotonic() - began
            # Turns that join later: queued while the invocation streams, taken by its refills. Queuing
            # them runs the two handlers here, in this process: their CPU is taken out of the worker's.
            queued: Dict[str, float] = {}
            joining: Dict[str, Any] = {"cpu_s": 0.0, "error": None}
            joiner = threading.Thread(target=_join_later, name="bench-join-later",
                                      args=(ask, job.get("late", []), job.get("late_after_s", 0.0), queued, joining))
            joiner = joiner if job.get("late") else None
            posts.reset()
            times = os.times()
            cpu, started = time.process_time(), time.monotonic()
            if joiner is not None:
                joiner.start()
            result = handlers["turn_worker"](event, context)
            ended = time.monotonic()
            cpu = time.process_time() - cpu
            after = os.times()
            if joiner is not None:
                joiner.join()
            if joining["error"]:
                raise RuntimeError("queuing the joining turns failed: " + str(joining["error"]))
            answer = {
                "id": job["id"], "setup_s": setup_s, "started_at": started, "ended_at": ended, "wall_s": ended - started,
                "cpu_s": cpu - float(joining["cpu_s"] or 0.0), "joining_cpu_s": joining["cpu_s"],
                "user_s": after.user - times.user, "system_s": after.system - times.system,
                "failures": len((result or {}).get("batchItemFailures") or []),
                "peak_rss_mb": _status_mb("VmHWM"), "rss_mb": _status_mb("VmRSS"), "threads": threading.active_count(),
                "post_starts": posts.starts, "queued_at": queued,
            }
        except Exception as exc:  # noqa: BLE001 - report it and keep serving
            traceback.print_exc()
            answer = {"id": job.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
    return 0


# ---- a CPU share like Lambda's, on this machine ------------------------------------------------

class CpuCap:
    """A cgroup whose CFS quota gives its processes ``vcpu`` of one CPU (Lambda's share for a memory size).

    cgroup v1 (``/sys/fs/cgroup/cpu``) or v2 (``cpu.max``, when the root delegates ``cpu``); needs the
    right to create a cgroup (root, usually). ``unavailable()`` says why not, or None.
    """

    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")
    _count = 0

    def __init__(self, vcpu: float, period_us: int = 100_000) -> None:
        CpuCap._count += 1
        self.vcpu, self.period_us = vcpu, period_us
        quota = max(1000, int(round(vcpu * period_us)))
        name = f"agentstream-bench-{os.getpid()}-{CpuCap._count}"
        if (self.V1 / "cpu.cfs_quota_us").exists():
            self.path = self.V1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            self.path = self.V2 / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {period_us}")

    @classmethod
    def unavailable(cls) -> Optional[str]:
        if not sys.platform.startswith("linux"):
            return "not Linux"
        if not (cls.V1 / "cpu.cfs_quota_us").exists():
            try:
                delegated = (cls.V2 / "cgroup.subtree_control").read_text().split()
            except OSError:
                return "no cgroup cpu controller"
            if "cpu" not in delegated:
                return "the cgroup v2 root does not delegate the cpu controller"
        try:
            probe = cls(0.5)
            probe.close()
        except OSError as exc:
            return f"cannot create a cgroup ({exc.strerror or exc})"
        return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def stats(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                out[key] = float(value)
        except (OSError, ValueError):
            pass
        return out

    def close(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # a process is still leaving it
                time.sleep(0.1)


# ---- the bench side ---------------------------------------------------------------------------

class ScaleWorker(JsonLinesChild):
    """One ``python -m bench.scale --serve`` process: a warm container for one level."""

    def __init__(self, name: str, env: Dict[str, str], log: Path, cap: Optional[CpuCap] = None) -> None:
        self.cap = cap
        super().__init__(["-m", "bench.scale", "--serve"], env, log, name, ready_timeout=120,
                         on_start=cap.add if cap is not None else None)
        self.started_rss_mb = self.ready["rss_mb"]


def _cpu_ticks() -> Tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            parts = [float(x) for x in stat.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


def run_batch(edge: Any, worker: ScaleWorker, k: int, deltas: int, answer_s: float, memory_mb: int,
              flush_ms: float, late: int = 0, late_after_s: float = 0.0) -> Dict[str, Any]:
    """One invocation of ``worker``'s ``turn_worker`` with K turns on fresh connections; its figures.

    With ``late``, only K - late turns are the invocation's batch; the other ``late`` are queued
    ``late_after_s`` into it, and the worker's refills take them while the first ones stream.
    """
    from bench.agent import stream_prompt
    from bench.client import Receiver, terminal_received
    from bench.metrics import measure_turn

    prompts = [stream_prompt(deltas, slow_s=answer_s) for _ in range(k)]
    receivers: List[Any] = []
    try:
        for prompt in prompts:
            receivers.append(Receiver(edge.gateway.ws_url, prompt.tag))
        ids = [edge.connection_id(prompt.tag) for prompt in prompts]
        turns_job = [{"connection_id": cid, "user": "scale-" + p.tag, "prompt": p.text}
                     for cid, p in zip(ids, prompts, strict=True)]
        job = {"id": prompts[0].tag, "memory_mb": memory_mb, "turns": turns_job[:k - late],
               "late": turns_job[k - late:], "late_after_s": late_after_s}
        busy0, total0 = _cpu_ticks()
        bench_cpu = time.process_time()
        result = worker.run(job, timeout=answer_s + late_after_s + 120)
        bench_cpu = time.process_time() - bench_cpu
        busy1, total1 = _cpu_ticks()
        if "error" in result:
            raise RuntimeError(f"the {worker.name} worker failed: {result['error']} (see {worker.log})")
        for receiver in receivers:
            receiver.wait(terminal_received, timeout=15)
        turns = []
        for cid, prompt, receiver in zip(ids, prompts, receivers, strict=True):
            agent = edge.bedrock.stream(prompt.tag)
            queued_at = result["queued_at"].get(cid)
            # A joining turn's `accepted` was posted while the invocation ran: not one of the turn's posts.
            starts = [t for t in result["post_starts"].get(cid, []) if queued_at is None or t > queued_at]
            worker_side = {"post_starts": starts, "failures": result["failures"]}
            turn = measure_turn("agentstream", prompt.answer, agent, receiver.frames, worker_side, flush_ms / 1000)
            turn.pop("curve", None)
            turn["late"] = queued_at is not None
            # Claiming the turn (batch), or the queue, the refill's poll and the claim (a joining turn).
            turn["start_ms"] = (agent.requested_at - (result["started_at"] if queued_at is None else queued_at)) * 1000
            step = answer_s / prompt.deltas
            turn["agent_stretch"] = ((agent.last_at - agent.first_at) / ((len(agent.sent) - 1) * step)
                                     if len(agent.sent) > 1 and step > 0 else None)
            turns.append(turn)
    finally:
        for receiver in receivers:
            receiver.close()
    wall = result["wall_s"]
    return {
        "k": k, "late": late, "wall_s": wall, "cpu_s": result["cpu_s"], "user_s": result["user_s"],
        "system_s": result["system_s"], "joining_cpu_s": result["joining_cpu_s"],
        "cpu_share": result["cpu_s"] / wall if wall else None, "setup_s": result["setup_s"],
        "peak_rss_mb": result["peak_rss_mb"], "rss_mb": result["rss_mb"], "threads": result["threads"],
        "failures": result["failures"], "bench_cpu_share": bench_cpu / wall if wall else None,
        "machine_busy": (busy1 - busy0) / (total1 - total0) if total1 > total0 else None,
        "ok": all(t["ok"] for t in turns), "turns": turns,
    }


def _summary(runs: List[Dict[str, Any]], started_rss_mb: float) -> Dict[str, Any]:
    """A level's figures over its runs: per execution the median, per turn percentiles over every turn."""
    from bench.metrics import median, percentile

    turns = [t for run in runs for t in run["turns"]]

    def spread(key: str, late: Optional[bool] = None) -> Dict[str, Optional[float]]:
        values = [t[key] for t in turns if t.get(key) is not None and (late is None or t["late"] == late)]
        return {"p50": percentile(values, 50), "p90": percentile(values, 90), "max": max(values, default=None)}

    stretch = [t["agent_stretch"] for t in turns if t.get("agent_stretch")]
    return {
        "k": runs[0]["k"] if runs else None,
        "late": runs[0]["late"] if runs else 0,
        "runs": len(runs),
        "turns": len(turns),
        "ok": all(r["ok"] for r in runs) and bool(runs),
        "errors": sorted({t["error"] for t in turns if t.get("error")})[:3],
        "wall_s": median([r["wall_s"] for r in runs]),
        "cpu_s": median([r["cpu_s"] for r in runs]),
        "cpu_s_max": max((r["cpu_s"] for r in runs), default=None),
        "user_s": median([r["user_s"] for r in runs]),
        "system_s": median([r["system_s"] for r in runs]),
        "cpu_share": median([r["cpu_share"] for r in runs if r["cpu_share"] is not None]),
        "cpu_share_max": max((r["cpu_share"] for r in runs if r["cpu_share"] is not None), default=None),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in runs), default=None),
        "started_rss_mb": started_rss_mb,
        "threads": max((r["threads"] for r in runs), default=None),
        "ttft_overhead_ms": spread("ttft_overhead_ms"),
        "terminal_lag_ms": spread("terminal_lag_ms"),
        "eos_lag_ms": spread("eos_lag_ms"),
        "start_ms": spread("start_ms"),
        "first_hold_ms": spread("first_hold_ms"),
        "text_p95_ms": _spread_of([t["delta_latency_ms"]["p95"] for t in turns]),
        "late_ttft_overhead_ms": spread("ttft_overhead_ms", late=True),
        "late_terminal_lag_ms": spread("terminal_lag_ms", late=True),
        "late_start_ms": spread("start_ms", late=True),
        "batch_start_ms": spread("start_ms", late=False),
        "messages": median([t["messages"] for t in turns]),
        "agent_stretch": median(stretch),
        "agent_stretch_max": max(stretch, default=None),
        "bench_cpu_share": median([r["bench_cpu_share"] for r in runs if r["bench_cpu_share"] is not None]),
        "machine_busy": median([r["machine_busy"] for r in runs if r["machine_busy"] is not None]),
    }


def _spread_of(values: List[Optional[float]]) -> Dict[str, Optional[float]]:
    from bench.metrics import percentile

    present = [v for v in values if v is not None]
    return {"p50": percentile(present, 50), "p90": percentile(present, 90), "max": max(present, default=None)}


def _worker_env(edge: Any, moto: Any, w: ScaleWorkload, max_turns: int) -> Dict[str, str]:
    return edge.app_env(moto, FLUSH_INTERVAL_MS=str(w.flush_ms), WORKER_MAX_TURNS=str(max_turns),
                        MAX_USER_TURNS_IN_FLIGHT="1000")


def _max_turns(k: int, w: ScaleWorkload) -> int:
    return 1 if k == 1 else max(k, w.default_turns)


def level_key(k: int, late: int = 0) -> str:
    """A level's key in the results: ``"10"``, or ``"10j"`` when some of its turns join later."""
    return f"{k}j" if late else str(k)


def _brief(label: str, run: Dict[str, Any]) -> str:
    def p50(key: str, late: Optional[bool] = None) -> float:
        values = sorted(t[key] for t in run["turns"] if t.get(key) is not None and (late is None or t["late"] == late))
        return values[len(values) // 2] if values else float("nan")

    joining = f" (joining turns +{p50('ttft_overhead_ms', True):.0f} ms)" if run["late"] else ""
    return (f"  {label}: {run['cpu_s']:.2f} s CPU over {run['wall_s']:.1f} s ({run['cpu_share'] * 100:.0f} % of a core), "
            f"peak {run['peak_rss_mb']:.0f} MB, first token +{p50('ttft_overhead_ms'):.0f} ms{joining}, done "
            f"+{p50('terminal_lag_ms'):.0f} ms (p50), agent pace x{p50('agent_stretch'):.2f}, machine "
            f"{(run['machine_busy'] or 0) * 100:.0f} % busy: " + ("ok" if run["ok"] else "FAILED"))


def measure(moto: Any, w: ScaleWorkload, logs: Path, say: Callable[[str], None]) -> Dict[str, Any]:
    """Every level, interleaved round after round; then the sizes under a Lambda-like CPU cap."""
    from bench.stack import Edge

    began = time.monotonic()
    out: Dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "code": code_revision(),
        "workload": {**asdict(w), "levels": list(w.levels)},
        "load_average": {"at the start": os.getloadavg()},
    }
    late = w.default_turns // 2 if w.staggered and w.default_turns in w.levels and w.default_turns > 1 else 0
    late_after_s = w.answer_s / 3
    order: List[Tuple[int, int]] = []
    for k in w.levels:
        order += [(k, 0)] * (w.baseline_per_round if k == 1 else 1)
        if late and k == w.default_turns:
            order.append((k, late))
    edge = Edge(w.first_token_ms / 1000, 0.0, w.post_ms / 1000).start()
    workers: Dict[int, ScaleWorker] = {}
    runs: Dict[str, List[Dict[str, Any]]] = {level_key(k, j): [] for k, j in order}
    try:
        for k in w.levels:
            workers[k] = ScaleWorker(f"K={k}", _worker_env(edge, moto, w, _max_turns(k, w)), logs / f"scale-k{k}.log")
            run_batch(edge, workers[k], k, 20, 0.0, w.configured_mb, w.flush_ms)  # warm: clients, connections
        for index in range(w.rounds):
            for k, j in order:
                run = run_batch(edge, workers[k], k, w.deltas, w.answer_s, w.configured_mb, w.flush_ms, j,
                                late_after_s if j else 0.0)
                runs[level_key(k, j)].append(run)
                say(_brief(f"round {index + 1}/{w.rounds} K={level_key(k, j):<3}", run))
        out["load_average"]["after the levels"] = os.getloadavg()
        out["levels"] = {key: _summary(items, workers[items[0]["k"]].started_rss_mb) for key, items in runs.items()}
        out["runs"] = {key: [{x: v for x, v in r.items() if x != "turns"} for r in items] for key, items in runs.items()}
    finally:
        for worker in workers.values():
            worker.stop()
    try:
        out["derived"] = derive(out)
        why = CpuCap.unavailable() if w.cpu_cap else "turned off (--no-cpu-cap)"
        out["check"] = {"available": why is None, "why_not": why, "period_us": w.cfs_period_us, "configs": []}
        if why is None:
            out["check"]["configs"] = _check(edge, moto, w, out["derived"], out["levels"], late, late_after_s, logs,
                                             say)
            out["load_average"]["after the check"] = os.getloadavg()
            out["derived"] = derive(out)
        else:
            say(f"  no CPU-capped check: {why}")
    finally:
        edge.stop()
    out["duration_s"] = time.monotonic() - began
    return out


def code_revision() -> str:
    """The commit the app's code was measured at (read-only git), and whether app.py or chalicelib/ differed."""
    from bench.stack import ROOT

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "app.py", "chalicelib"], cwd=ROOT).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes to app.py or chalicelib/" if changed else "")


def check_sizes(k: int, chosen: int, configured: int) -> List[Tuple[int, str]]:
    """The memory sizes the check runs K at: the chosen and the configured, and a few in between (or below)."""
    sizes = {chosen: "chosen", configured: "configured"}
    if k == 1:
        sizes.setdefault(MIN_MEMORY_MB, "minimum")
    for size in (768, 1024, 1536):
        if min(chosen, configured) < size < max(chosen, configured):
            sizes.setdefault(size, "between")
    return sorted(sizes.items())


def _check(edge: Any, moto: Any, w: ScaleWorkload, derived: Dict[str, Any], levels: Dict[str, Any], late: int,
           late_after_s: float, logs: Path, say: Callable[[str], None]) -> List[Dict[str, Any]]:
    """K = 1 and K = 10 again, each worker held to the CPU share Lambda gives a memory size; each
    configuration judged against the same level's uncapped runs (``levels``)."""
    out = []
    for k in (1, w.default_turns):
        size = derived["rule_sizes"].get(str(k))
        if size is None:
            continue
        for memory_mb, why in check_sizes(k, size["memory_mb"], w.configured_mb):
            vcpu = memory_mb / LAMBDA_MB_PER_VCPU
            cap = CpuCap(vcpu, w.cfs_period_us)
            worker = None
            try:
                worker = ScaleWorker(f"K={k} at {memory_mb} MB", _worker_env(edge, moto, w, _max_turns(k, w)),
                                     logs / f"scale-k{k}-{memory_mb}mb.log", cap)
                run_batch(edge, worker, k, 20, 0.0, memory_mb, w.flush_ms)
                variants = [(0, w.check_runs * (2 if k == 1 else 1))] + ([(late, 1)] if late and k == w.default_turns else [])
                for j, count in variants:
                    before = cap.stats()
                    runs = []
                    for _ in range(count):
                        runs.append(run_batch(edge, worker, k, w.deltas, w.answer_s, memory_mb, w.flush_ms, j,
                                              late_after_s if j else 0.0))
                        say(_brief(f"capped to {memory_mb} MB ({vcpu:.2f} vCPU) K={level_key(k, j):<3}", runs[-1]))
                    after = cap.stats()
                    summary = _summary(runs, worker.started_rss_mb)
                    throttled = (after.get("throttled_time", 0) - before.get("throttled_time", 0)) / 1e9 \
                        if "throttled_time" in after else (after.get("throttled_usec", 0) - before.get("throttled_usec", 0)) / 1e6
                    summary.update({"memory_mb": memory_mb, "vcpu": vcpu, "why": why, "throttled_s": throttled,
                                    "throttled_periods": after.get("nr_throttled", 0) - before.get("nr_throttled", 0),
                                    "periods": after.get("nr_periods", 0) - before.get("nr_periods", 0),
                                    "gb_s_per_turn": memory_mb / 1024 * (summary["wall_s"] or 0) / k})
                    summary["passes"], summary["criteria"] = passes(summary, levels.get(level_key(k, j)))
                    out.append(summary)
            finally:
                if worker is not None:
                    worker.stop()
                cap.close()
    return out


# ---- the arithmetic ---------------------------------------------------------------------------

TTFT_LIMIT_MS = 50.0  # first-token overhead at p50: the relay's target, and the issue's
CAP_MARGIN_MS = 50.0  # what a CPU cap may add to end lag and to text latency (p50 of turns)


def passes(summary: Dict[str, Any], reference: Optional[Dict[str, Any]]) -> Tuple[bool, Dict[str, Any]]:
    """Whether a CPU-capped configuration keeps its promises, and each criterion's figures.

    Every turn whole; first-token overhead ≤ 50 ms at p50 (the joining turns' too); and, against the
    same level run uncapped (``reference``), at most 50 ms more end lag to ``done`` at p50 and at most
    50 ms more text latency (each turn's p95; their median). Relative, because on this machine K
    identical turns ending at the same instant already take ~100 ms to all get ``done`` uncapped.
    """
    def p50(source: Optional[Dict[str, Any]], key: str) -> Optional[float]:
        return ((source or {}).get(key) or {}).get("p50")

    criteria: Dict[str, Any] = {"whole": bool(summary["ok"])}
    late = bool(summary.get("late"))
    ttft = p50(summary, "late_ttft_overhead_ms" if late else "ttft_overhead_ms")
    criteria["first_token"] = {"value": ttft, "limit": TTFT_LIMIT_MS, "ok": ttft is not None and ttft <= TTFT_LIMIT_MS}
    for name, key in (("end_lag", "terminal_lag_ms"), ("text_p95", "text_p95_ms")):
        value, base = p50(summary, key), p50(reference, key)
        limit = None if base is None else base + CAP_MARGIN_MS
        criteria[name] = {"value": value, "uncapped": base, "limit": limit,
                          "ok": value is not None and (limit is None or value <= limit)}
    ok = criteria["whole"] and all(c["ok"] for name, c in criteria.items() if name != "whole")
    return ok, criteria


def memory_for(peak_rss_mb: float, cpu_share: float, utilization: float, rss_headroom: float) -> Dict[str, Any]:
    """The smallest Lambda memory (a multiple of 64 MB) that holds the peak with headroom and gives the
    CPU the worker used at most ``utilization`` of its vCPU share; which of the two decided."""
    by_rss = peak_rss_mb * rss_headroom
    by_cpu = cpu_share / utilization * LAMBDA_MB_PER_VCPU
    need = max(MIN_MEMORY_MB, by_rss, by_cpu)
    memory = min(MAX_MEMORY_MB, int(math.ceil(need / MEMORY_STEP_MB) * MEMORY_STEP_MB))
    return {"memory_mb": memory, "by_rss_mb": by_rss, "by_cpu_mb": by_cpu,
            "bound": "CPU" if by_cpu >= max(by_rss, MIN_MEMORY_MB) else ("memory" if by_rss >= MIN_MEMORY_MB else "minimum"),
            "vcpu": memory / LAMBDA_MB_PER_VCPU, "over_one_vcpu": by_cpu > LAMBDA_MB_PER_VCPU}


def recommended(scale: Dict[str, Any], k: int) -> Optional[Dict[str, Any]]:
    """The smallest memory whose CPU-capped runs of K (all at once, and joining) all kept the promises."""
    configs = [c for c in (scale.get("check") or {}).get("configs", []) if c["k"] == k]
    for memory_mb in sorted({c["memory_mb"] for c in configs}):
        at = [c for c in configs if c["memory_mb"] == memory_mb]
        if all(c["passes"] for c in at):
            plain = next((c for c in at if not c["late"]), at[0])
            return {"memory_mb": memory_mb, "wall_s": plain["wall_s"], "gb_s_per_turn": plain["gb_s_per_turn"],
                    "configs": len(at)}
    return None


def derive(scale: Dict[str, Any]) -> Dict[str, Any]:
    """Memory per level, GB-seconds per turn, and executions at 100 / 1,000 / 10,000 turns in flight.

    The comparison uses the checked sizes (the smallest that kept the promises under Lambda's CPU
    share, with that run's duration) when the check ran, else the sizes the rule gives.
    """
    w = scale["workload"]
    default = w["default_turns"]
    configured = w["configured_mb"]
    sizes: Dict[str, Any] = {}
    for key, level in scale["levels"].items():
        if level.get("late"):
            continue
        k = level["k"]
        size = memory_for(level["peak_rss_mb"], level["cpu_share"], w["utilization"], w["rss_headroom"])
        size["gb_s_per_turn"] = size["memory_mb"] / 1024 * level["wall_s"] / k
        size["gb_s_per_turn_configured"] = configured / 1024 * level["wall_s"] / k
        size["cpu_s_per_turn"] = level["cpu_s"] / k
        size["vcpu_per_turn"] = level["cpu_share"] / k
        sizes[key] = size
    basis: Dict[str, Any] = {}
    for k in (1, default):
        checked = recommended(scale, k)
        rule = sizes.get(str(k))
        if checked is not None:
            basis[str(k)] = {**checked, "how": "checked"}
        elif rule is not None:
            basis[str(k)] = {"memory_mb": rule["memory_mb"], "gb_s_per_turn": rule["gb_s_per_turn"],
                             "wall_s": scale["levels"][str(k)]["wall_s"], "how": "rule"}
    one, pooled = basis.get("1"), basis.get(str(default))
    baseline_wall = scale["levels"].get("1", {}).get("wall_s")
    rows = []
    for n in IN_FLIGHT:
        row: Dict[str, Any] = {"in_flight": n, "batch1_executions": n, "default_executions": math.ceil(n / default)}
        row["executions_ratio"] = row["batch1_executions"] / row["default_executions"]
        if one and pooled:
            row["batch1_gb_s_per_turn"] = one["gb_s_per_turn"]
            row["batch1_configured_gb_s_per_turn"] = configured / 1024 * (baseline_wall or 0)
            row["default_gb_s_per_turn"] = pooled["gb_s_per_turn"]
            row["gb_s_ratio"] = one["gb_s_per_turn"] / pooled["gb_s_per_turn"]
            row["gb_s_ratio_configured"] = row["batch1_configured_gb_s_per_turn"] / pooled["gb_s_per_turn"]
            # The memory one-turn executions would need to be deployed with for the pooled worker to use 3× fewer GB-s.
            row["batch1_mb_for_3x"] = 3 * pooled["gb_s_per_turn"] / (baseline_wall or one["wall_s"]) * 1024
            row["batch1_memory_gb"] = n * one["memory_mb"] / 1024
            row["default_memory_gb"] = row["default_executions"] * pooled["memory_mb"] / 1024
        rows.append(row)
    base = scale["levels"].get("1", {}).get("ttft_overhead_ms", {}).get("p50")
    at_default = scale["levels"].get(str(default), {}).get("ttft_overhead_ms", {}).get("p50")
    joining = scale["levels"].get(level_key(default, 1), {}).get("late_ttft_overhead_ms", {}).get("p50")
    return {"rule_sizes": sizes, "sizes": sizes, "basis": basis, "in_flight": rows, "default_turns": default,
            "configured_mb": configured, "ttft_p50_baseline_ms": base, "ttft_p50_default_ms": at_default,
            "ttft_p50_joining_ms": joining,
            "ttft_p50_increase_ms": None if base is None or at_default is None else at_default - base}


def verdicts(scale: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The issue's targets at 1,000 turns in flight: measured, and met or not."""
    d = derive(scale)
    default = d["default_turns"]
    row = next((r for r in d["in_flight"] if r["in_flight"] == 1_000), None)
    out: List[Dict[str, Any]] = []
    if row is None:
        return out
    out.append({"target": "≥ 5× fewer concurrent executions than one turn per execution (1,000 turns in flight)",
                "value": row["executions_ratio"], "ok": row["executions_ratio"] >= 5,
                "measured": f"{row['batch1_executions']:,} vs {row['default_executions']:,}: "
                            f"{row['executions_ratio']:.0f}× fewer"})
    if "gb_s_ratio" in row:
        one, pooled = d["basis"]["1"], d["basis"][str(default)]
        how = "the smallest that kept first token and end lag in the CPU-capped check" \
            if one["how"] == pooled["how"] == "checked" else "the sizing rule's"
        out.append({"target": f"≥ 3× fewer GB-seconds per turn, each at the memory it needs ({how})",
                    "value": row["gb_s_ratio"], "ok": row["gb_s_ratio"] >= 3,
                    "measured": f"{row['batch1_gb_s_per_turn']:.2f} GB-s ({one['memory_mb']:,} MB) vs "
                                f"{row['default_gb_s_per_turn']:.2f} GB-s ({pooled['memory_mb']:,} MB): "
                                f"{row['gb_s_ratio']:.2f}× fewer; 3× holds only against one-turn executions of "
                                f"{row['batch1_mb_for_3x']:,.0f} MB or more"})
        out.append({"target": f"… against one turn per execution at today's {d['configured_mb']} MB",
                    "value": row["gb_s_ratio_configured"], "ok": row["gb_s_ratio_configured"] >= 3,
                    "measured": f"{row['batch1_configured_gb_s_per_turn']:.2f} GB-s vs "
                                f"{row['default_gb_s_per_turn']:.2f} GB-s: {row['gb_s_ratio_configured']:.2f}× fewer"})
    at = d["ttft_p50_default_ms"]
    if at is not None:
        out.append({"target": f"first-token overhead ≤ 50 ms at p50, {default} turns at once",
                    "value": at, "ok": at <= TTFT_LIMIT_MS, "measured": f"{at:.1f} ms" + (
                        f" (one turn alone: {d['ttft_p50_baseline_ms']:.1f} ms: {d['ttft_p50_increase_ms']:+.1f} ms)"
                        if d["ttft_p50_baseline_ms"] is not None else "")})
    joining = d["ttft_p50_joining_ms"]
    if joining is not None:
        out.append({"target": "… for turns joining an execution already streaming (its refills)", "value": joining,
                    "ok": joining <= TTFT_LIMIT_MS, "measured": f"{joining:.1f} ms"})
    pooled_basis = d["basis"].get(str(default))
    if pooled_basis and pooled_basis["how"] == "checked":
        at_size = [c for c in scale["check"]["configs"] if c["k"] == default and c["memory_mb"] == pooled_basis["memory_mb"]]
        worst = max((c["late_ttft_overhead_ms"]["p50"] if c["late"] else c["ttft_overhead_ms"]["p50"]) or 0 for c in at_size)
        out.append({"target": f"… with the CPU share of {pooled_basis['memory_mb']:,} MB "
                              f"({pooled_basis['memory_mb'] / LAMBDA_MB_PER_VCPU:.2f} vCPU)",
                    "value": worst, "ok": worst <= TTFT_LIMIT_MS, "measured": f"{worst:.1f} ms (the worse of all at once "
                                                                              f"and joining)"})
    return out


# ---- running the phase alone ------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"]:
        return serve()
    from bench.__main__ import main as bench_main

    return bench_main(["--only", "scale", *args])


if __name__ == "__main__":
    sys.exit(main())
