"""Cold start and memory: import time of the handlers' module path, first invocations, peak RSS.

- Import time: ``import app`` (the module every deployed handler's path starts with: Chalice
  puts all four handlers in ``app.py``) against ``import boto3`` alone, each timed with
  ``time.perf_counter()`` in a fresh interpreter, median of N after one discarded warm-up that
  writes the bytecode (to ``build/bench/pycache``, not the source tree). Twice for the app: from
  the source tree with bytecode cached, and from the unpacked deployment package and layer as on
  Lambda, where ``/var/task`` and ``/opt`` are read-only: nothing is written, so only the ``.pyc``
  that ``make package`` ships (``infra/bytecode.py``) saves compiling at import. ``python -X importtime`` splits the
  app's import by top-level package (self times, so the parts add up).
- First invocation: a chain of fresh interpreters, one per handler (``bench.probe``), against
  moto and the emulators with no added latency: ``websocket_connect`` (two connections),
  ``websocket_message`` (three asks), ``turn_worker`` (those three turns, the last one a
  100,000-character answer) and ``websocket_disconnect``. Each reports its import, its first
  invocation (clients created then), its second (warm) and its peak resident memory.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from bench import events
from bench.agent import big_prompt
from bench.client import Receiver
from bench.metrics import median
from bench.stack import ROOT, Edge, MotoServer, clean_env

_TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"

# The worker's cold path without and with the observability code it runs on its first turn: "before"
# imports the module path every handler starts with (`app`, which brings the worker's modules) and
# boto3 (the worker creates its clients with it either way); "after" then does what the first turn
# adds: the Tracer (`chalicelib.tracing.tracer()`: the X-Ray SDK, botocore patched), the report's
# consumers (`chalicelib.turns.report.consumers()`: metrics, metering, turn events) and the first EMF
# metrics line (`chalicelib.turns.metrics.record_turn`, Powertools EphemeralMetrics). Each step timed
# with `time.perf_counter()`, peak RSS (`VmHWM`) read after each. The EMF line goes to stdout before
# the answer, which is the last line.
_OBSERVABILITY = r"""
import json, sys, time
def hwm():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
out = {"interpreter_mb": hwm()}
began = time.perf_counter()
import app
import chalicelib.handlers.worker, chalicelib.turns.pool, chalicelib.turns.run
import boto3
out["before_s"] = time.perf_counter() - began
out["before_mb"] = hwm()
if sys.argv[1] == "after":
    t = time.perf_counter()
    from chalicelib import tracing
    tracer = tracing.tracer()
    out["tracer_s"], out["tracer_disabled"] = time.perf_counter() - t, bool(tracer.disabled)
    out["tracer_mb"] = hwm()
    t = time.perf_counter()
    from chalicelib.turns.report import TurnReport, consumers
    consumers()
    out["consumers_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from chalicelib.turns.metrics import record_turn
    record_turn(None, TurnReport("turn", "user", "connection", "session", "agent", "bench", "done", 2000, 10, 300, 47,
                                 1000, 400))
    out["metrics_s"] = time.perf_counter() - t
    out["after_s"] = time.perf_counter() - began
    out["after_mb"] = hwm()
from bench.probe import WATCHED
out["loaded"] = [name for name in WATCHED if name in sys.modules]
out["modules"] = len(sys.modules)
sys.stdout.flush()
print(json.dumps(out))
"""

# A trace header like the one Lambda sets for an invocation of a function with active tracing.
FAKE_TRACE_ID = "Root=1-675f0e3a-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


def observability_cost(cwd: Path, env: Dict[str, str], runs: int) -> Dict[str, Any]:
    """``runs`` fresh interpreters of each kind (after one discarded warm-up that writes the bytecode):
    the worker's cold path before and after its observability code, in a Lambda-like environment
    (``LAMBDA_TASK_ROOT`` and a trace header set, or the Tracer disables itself and patches nothing),
    and after it outside Lambda (as the local stack and the other phases run it)."""
    lambda_env = dict(env, LAMBDA_TASK_ROOT=str(cwd), _X_AMZN_TRACE_ID=FAKE_TRACE_ID,
                      AWS_LAMBDA_FUNCTION_NAME="agentstream-dev-turn_worker")
    kinds = {"before": ("before", lambda_env), "after": ("after", lambda_env), "after_outside_lambda": ("after", env)}
    out: Dict[str, Any] = {"runs": runs}
    for kind, (mode, kind_env) in kinds.items():
        samples = []
        for index in range(runs + 1):
            done = subprocess.run([sys.executable, "-c", _OBSERVABILITY, mode], cwd=cwd, env=kind_env,
                                  capture_output=True, text=True, check=True)
            if index:
                samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
        out[kind] = samples
    return out


def import_seconds(module: str, cwd: Path, env: Dict[str, str], runs: int, no_bytecode: bool = False) -> List[float]:
    """``runs`` timings of ``import module`` in fresh interpreters (after one discarded run)."""
    flags = ["-B"] if no_bytecode else []
    out = []
    for index in range(runs + 1):
        done = subprocess.run(
            [sys.executable, *flags, "-c", _TIMER.format(module=module)], cwd=cwd, env=env, capture_output=True,
            text=True, check=True,
        )
        if index:
            out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def importtime_breakdown(module: str, cwd: Path, env: Dict[str, str], runs: int = 3) -> Dict[str, float]:
    """Milliseconds of self import time per top-level package (stdlib grouped), median of runs."""
    samples: Dict[str, List[float]] = defaultdict(list)
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=cwd, env=env,
                              capture_output=True, text=True, check=True)
        totals: Dict[str, float] = defaultdict(float)
        for line in done.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(.+)$", line)
            if not match:
                continue
            root = match.group(3).strip().split(".")[0]
            group = "(stdlib)" if root in sys.stdlib_module_names or root.startswith("_") else root
            totals[group] += int(match.group(1)) / 1000
        for group, value in totals.items():
            samples[group].append(value)
    return {group: median(values) for group, values in sorted(samples.items(), key=lambda kv: -median(kv[1]))}


def _probe(handler: str, event_list: List[Dict[str, Any]], env: Dict[str, str], log: Path, cwd: Path) -> Dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(event_list, f)
    with open(log, "a") as err:
        done = subprocess.run([sys.executable, "-B", "-m", "bench.probe", handler, f.name], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=300)
    Path(f.name).unlink()
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"probe {handler} failed (exit {done.returncode}); see {log}")
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    errors = [call["error"] for call in probe["calls"] if call["error"]]
    if errors:
        raise RuntimeError(f"{handler} raised in a fresh container: {errors[0]} (see {log})")
    return probe


def handler_chain(moto: MotoServer, edge: Edge, log: Path, big_chars: int,
                  deployed: Optional[Tuple[Path, str]] = None) -> Dict[str, Any]:
    """One cold container per handler, each invoked on the events the previous one produced.

    With ``deployed`` (the unpacked package's task folder and its PYTHONPATH) each container runs
    the package as Lambda does: the app and the layer's libraries from the package, nothing written;
    the bench's own probe code comes from the source tree, after them on the path.
    """
    env = edge.app_env(moto, PYTHONDONTWRITEBYTECODE="1")
    cwd = ROOT
    if deployed is not None:
        cwd = deployed[0]
        env["PYTHONPATH"] = f"{deployed[1]}:{ROOT}"
    prompt = big_prompt(big_chars)
    a = Receiver(edge.gateway.ws_url, prompt.tag)
    b = Receiver(edge.gateway.ws_url, prompt.tag + "b")
    try:
        conn_a, conn_b = edge.connection_id(prompt.tag), edge.connection_id(prompt.tag + "b")
        user = "probe-" + prompt.tag
        out: Dict[str, Any] = {}
        out["websocket_connect"] = _probe(
            "websocket_connect", [events.connect(conn_a, events.token(user)), events.connect(conn_b, events.token(user))],
            env, log, cwd)
        asks = [{"prompt": "hello"}, {"prompt": "hello again"}, {"prompt": prompt.text}]
        out["websocket_message"] = _probe("websocket_message", [events.message(conn_a, ask) for ask in asks], env, log,
                                          cwd)
        a.wait(lambda frames: sum(f.type == "accepted" for f in frames) >= 3, 10)
        turn_ids = [f.event["turnId"] for f in a.frames if f.type == "accepted"]
        queued = events.receive_turns(moto.sqs, moto.resources.turn_queue_url, 3)
        arn = moto.sqs.get_queue_attributes(QueueUrl=moto.resources.turn_queue_url, AttributeNames=["QueueArn"])
        by_turn = {json.loads(m["Body"]).get("turnId"): m for m in queued}
        ordered = [by_turn.get(t) for t in turn_ids]
        if len(turn_ids) != 3 or None in ordered:
            raise RuntimeError(f"the asks were not queued as expected: accepted {turn_ids}, queued {list(by_turn)}")
        worker_events = [events.sqs([m], arn["Attributes"]["QueueArn"], "us-east-1") for m in ordered]
        out["turn_worker"] = _probe("turn_worker", worker_events, env, log, cwd)
        finished = a.wait(lambda frames: sum(f.type in ("done", "error") for f in frames) >= 3, 30)
        answer = "".join(f.text for f in a.frames if f.event.get("turnId") == turn_ids[2])
        out["turn_worker"]["big_answer_ok"] = finished and answer == prompt.answer
        out["websocket_disconnect"] = _probe("websocket_disconnect", [events.disconnect(conn_a), events.disconnect(conn_b)],
                                             env, log, cwd)
    finally:
        a.close()
        b.close()
    for handler, probe in out.items():
        probe["ok"] = all(c["error"] is None for c in probe["calls"]) and _results_ok(handler, probe["calls"])
    return out


def _results_ok(handler: str, calls: List[Dict[str, Any]]) -> bool:
    if handler == "websocket_connect":
        return all((c["result"] or {}).get("statusCode") == 200 for c in calls)
    if handler == "turn_worker":
        return all(not (c["result"] or {}).get("batchItemFailures") for c in calls)
    return True


def measure(moto: MotoServer, package_dir: Optional[str], runs: int, chain_runs: int, big_chars: int, work: Path,
            say: Callable[[str], None]) -> Dict[str, Any]:
    log = work / "probes.log"
    # Bytecode cached, outside the source tree: the discarded first run of each timing writes it.
    env = clean_env(PYTHONPYCACHEPREFIX=str(work / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result: Dict[str, Any] = {"runs": runs, "chain_runs": chain_runs}
    result["boto3_s"] = import_seconds("boto3", ROOT, env, runs)
    say(f"  import boto3: {median(result['boto3_s']) * 1000:.0f} ms")
    result["app_s"] = import_seconds("app", ROOT, env, runs)
    say(f"  import app: {median(result['app_s']) * 1000:.0f} ms")
    result["app_breakdown_ms"] = importtime_breakdown("app", ROOT, env)
    result["boto3_breakdown_ms"] = importtime_breakdown("boto3", ROOT, env)
    result["observability"] = observability_cost(ROOT, env, runs)
    obs = result["observability"]
    say(f"  worker cold path, before/after its observability code: "
        f"{median([s['before_s'] for s in obs['before']]) * 1000:.0f} ms / "
        f"{median([s['after_s'] for s in obs['after']]) * 1000:.0f} ms")
    deployed: Optional[Tuple[Path, str]] = None
    if package_dir is not None:
        deployed = unpack(package_dir, work / "lambda")
        task, pythonpath = deployed
        deployed_env = clean_env(PYTHONPATH=pythonpath)
        result["app_deployed_s"] = import_seconds("app", task, deployed_env, runs, no_bytecode=True)
        say(f"  import app from the deployment package, as on Lambda: {median(result['app_deployed_s']) * 1000:.0f} ms")
        result["boto3_layer"] = (Path(pythonpath.split(":")[-1]) / "boto3").is_dir()
        if result["boto3_layer"]:  # the package brings its own boto3: time that one too, as Lambda loads it
            result["boto3_deployed_s"] = import_seconds("boto3", task, deployed_env, runs, no_bytecode=True)
            say(f"  import boto3 from the layer, as on Lambda: {median(result['boto3_deployed_s']) * 1000:.0f} ms")
    result["chains_deployed"] = deployed is not None

    edge = Edge(0.0, 0.0, 0.0).start()
    chains = []
    try:
        for index in range(chain_runs):
            chains.append(handler_chain(moto, edge, log, big_chars, deployed))
            say(f"  cold handler chain {index + 1}/{chain_runs}: " + ", ".join(
                f"{h} {c['import_s'] * 1000:.0f}+{c['calls'][0]['s'] * 1000:.0f} ms, {c['peak_rss_mb']:.0f} MB"
                for h, c in chains[-1].items()))
    finally:
        edge.stop()
    result["handlers"] = {}
    for handler in chains[0]:
        probes = [chain[handler] for chain in chains]
        calls = len(probes[0]["calls"])
        result["handlers"][handler] = {
            "ok": all(p["ok"] for p in probes) and all(p.get("big_answer_ok", True) for p in probes),
            "import_ms": median([p["import_s"] * 1000 for p in probes]),
            "first_ms": median([p["calls"][0]["s"] * 1000 for p in probes]),
            "import_cpu_ms": median([p["import_cpu_s"] * 1000 for p in probes]),
            "first_cpu_ms": median([p["calls"][0]["cpu_s"] * 1000 for p in probes]),
            "second_ms": median([p["calls"][1]["s"] * 1000 for p in probes]) if calls > 1 else None,
            "calls_ms": [median([p["calls"][i]["s"] * 1000 for p in probes]) for i in range(calls)],
            "interpreter_rss_mb": median([p["interpreter_rss_mb"] for p in probes]),
            "after_import_rss_mb": median([p["after_import_rss_mb"] for p in probes]),
            "after_calls_rss_mb": [median([p["calls"][i]["peak_rss_mb"] for p in probes]) for i in range(calls)],
            "peak_rss_mb": max(p["peak_rss_mb"] for p in probes),
            "modules": median([p["modules"] for p in probes]),
            "loaded": sorted({name for p in probes for name in p.get("loaded", [])}),
        }
    return result


def unpack(package_dir: str, root: Path) -> Tuple[Path, str]:
    """The package laid out as Lambda does: the function's zip in ``task/`` (``/var/task``), the
    layer's in ``opt/`` (``/opt``); returns the task folder and the ``PYTHONPATH`` Lambda would give."""
    shutil.rmtree(root, ignore_errors=True)
    paths = [root / "task"]
    with zipfile.ZipFile(Path(package_dir) / "deployment.zip") as archive:
        archive.extractall(root / "task")
    layer = Path(package_dir) / "layer-deployment.zip"
    if layer.is_file():
        with zipfile.ZipFile(layer) as archive:
            archive.extractall(root / "opt")
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        paths += [root / "opt" / "python", root / "opt" / "python" / "lib" / version / "site-packages"]
    return root / "task", ":".join(str(p) for p in paths)
