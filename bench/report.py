"""docs/benchmarks.md and the plot, from the bench's results.

The bench owns the regions between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in
docs/benchmarks.md and rewrites only those; everything outside them is written by hand (the
relay's design, the notes on missed targets) and kept. A missing file gets a skeleton.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bench.relays import LABELS, RELAYS

LAMBDA_MB_PER_VCPU = 1769  # AWS: a function gets one vCPU's worth of CPU at 1,769 MB, pro rata below

REGIONS = ("setup", "targets", "stream", "long", "big", "coldstart", "observability", "memory", "size", "capacity",
           "scale", "cost")


# ---- formatting -------------------------------------------------------------------------------

def ms(value: Optional[float]) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f} ms"
    return f"{value:.1f} ms"


def num(value: Optional[float], digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def kb(size: Optional[float]) -> str:
    return "–" if size is None else f"{size / 1024:,.1f} KB"


def ratio(value: Optional[float], base: Optional[float]) -> str:
    if value is None or base is None or base == 0:
        return "–"
    r = value / base
    if r >= 10:
        return f"{r:,.0f}×"
    if r >= 0.1:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- the regions ------------------------------------------------------------------------------

def _setup(r: Dict[str, Any]) -> str:
    m, w = r["machine"], r["workload"]
    machine = table(["", ""], [
        ["CPU", f"{m['cpu']} ({m['cores']} cores)"],
        ["memory", f"{m['memory_gb']:.0f} GB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["boto3 / botocore", f"{m['boto3']} / {m['botocore']}"],
        ["Chalice", m["chalice"]],
        ["run", f"{r['started']}, {r['duration_s'] / 60:.1f} minutes, `{r['command']}`"],
        ["load average (1 min)", ", ".join(f"{load[0]:.1f} {when}" for when, load in r.get("load_average", {}).items())],
        *[[f"re-run alone since: {phase}", f"{again['started']}, {again['duration_s'] / 60:.1f} minutes, `{again['command']}`; "
           f"load average " + ", ".join(f"{load[0]:.1f} {when}" for when, load in again["load_average"].items())]
          for phase, again in sorted(r.get("reruns", {}).items())],
    ], "ll")
    return f"""{machine}

Workload: the agent answers after a **{w['first_token_ms']:g} ms** first-token delay with **{w['deltas']} deltas**
(token-sized, {r['relays']['stream']['agentstream']['summary']['agent']['characters']:,.0f} characters) **{w['delta_ms']:g} ms** apart; every
post to the management API takes **{w['post_ms']:g} ms**; agentstream flushes at most every
**{w['flush_ms']} ms**. Also: a long answer (the same {w['long_deltas']} deltas spread over {w['long_s']:g} s) and a
{w['big_chars']:,}-character answer (deltas of 1,000 characters, {w['delta_ms']:g} ms apart). Streaming figures are
the median (p50) of {w['runs']} runs ({w['big_runs']} for the 100,000-character answer; one for the long answer), the
three relays interleaved."""


def _target_rows(r: Dict[str, Any]) -> List[List[str]]:
    rows: List[List[str]] = []

    def add(name: str, measured: str, ok: Optional[bool], miss: str = "") -> None:
        verdict = "–" if ok is None else ("met" if ok else f"**missed**{': ' + miss if miss else ''}")
        rows.append([name, measured, verdict])

    if "relays" not in r:
        return rows + _scale_target_rows(r)
    w = r["workload"]
    s = {relay: r["relays"]["stream"][relay]["summary"] for relay in RELAYS}
    ours = s["agentstream"]

    ttft = ours["ttft_overhead_ms"]
    add("first-token overhead ≤ 50 ms at p50", ms(ttft), None if ttft is None else ttft <= 50,
        "" if ttft is None else f"by {ttft - 50:.0f} ms")
    lag = ours["terminal_lag_ms"]
    add(f"end-of-stream lag ≤ 100 ms ({w['post_ms']:g} ms posts, {w['delta_ms']:g} ms deltas)",
        f"{ms(lag)} to the `done` frame ({ms(ours['eos_lag_ms'])} to the last text); post-per-delta: "
        f"{ms(s['post_per_delta']['eos_lag_ms'])}", None if lag is None else lag <= 100,
        "" if lag is None else f"by {lag - 100:.0f} ms")
    fewer = None
    if ours["messages"] and s["post_per_delta"]["messages"]:
        fewer = s["post_per_delta"]["messages"] / ours["messages"]
    add("≥ 5× fewer messages than post-per-delta (token-sized deltas)",
        f"{num(ours['messages'])} vs {num(s['post_per_delta']['messages'])} messages: {fewer or 0:.1f}× fewer",
        None if fewer is None else fewer >= 5)
    hold, excess, first = ours["hold_ms"]["max"], ours["excess_hold_ms"]["max"], ours["first_hold_ms"]
    if hold is not None and excess is not None and first is not None:
        beyond = excess - first
        add(f"…never holding text back longer than the flush interval ({w['flush_ms']} ms)",
            f"longest wait before a post started: {ms(hold)}; past the flush interval (or the post in flight, "
            f"if that ended later): {ms(excess)}, of which {ms(first)} is the path every delta takes (agent → boto3 "
            f"→ relay → signed request; the first delta's wait)", beyond <= 0, f"by {beyond:.1f} ms")
    cold = r.get("coldstart")
    if cold:
        boto3, app = _median(cold["boto3_s"]), _median(cold["app_s"])
        add("importing any handler's module path ≤ 1.3× importing boto3 alone",
            f"`import app` {ms(app * 1000)} vs `import boto3` {ms(boto3 * 1000)}: {app / boto3:.2f}×", app / boto3 <= 1.3,
            f"by {(app / boto3 - 1.3) * 100:.0f} points")
        if cold.get("app_deployed_s"):
            deployed = _median(cold["app_deployed_s"])
            if cold.get("boto3_deployed_s"):
                base, which = _median(cold["boto3_deployed_s"]), "the layer's boto3, from the same package"
            else:
                base, which = boto3, "the runtime's boto3, with its bytecode"
            add("…the same, from the deployment package as Lambda loads it (its own `.pyc` only, nothing written)",
                f"`import app` {ms(deployed * 1000)} vs `import boto3` {ms(base * 1000)} ({which}): "
                f"{deployed / base:.2f}×", deployed / base <= 1.3, f"by {(deployed / base - 1.3) * 100:.0f} points")
    size = r.get("size")
    if size:
        function = size["zips"]["deployment.zip"]
        add("deployment zip < 1 MB", f"`deployment.zip` {kb(function)}", function < 1024 * 1024,
            f"by {kb(function - 1024 * 1024)}")
        if "layer-deployment.zip" in size["zips"]:
            total = sum(size["zips"].values())
            add("…with the dependency layer it needs", f"{kb(total)} (`layer-deployment.zip` "
                f"{kb(size['zips']['layer-deployment.zip'])})", total < 1024 * 1024, f"by {kb(total - 1024 * 1024)}")
    if cold:
        peak = cold["handlers"]["turn_worker"]["peak_rss_mb"]
        add("turn worker fits in 256 MB through a 100,000-character turn", f"peak RSS {peak:.0f} MB", peak <= 256)
    return rows + _scale_target_rows(r)


def _scale_target_rows(r: Dict[str, Any]) -> List[List[str]]:
    """The scale phase's targets (see *One worker, many turns*), when it ran."""
    if not (r.get("scale") or {}).get("levels"):
        return []
    from bench.scale import verdicts

    return [[v["target"], v["measured"], "met" if v["ok"] else "**missed**"] for v in verdicts(r["scale"])]


def _targets(r: Dict[str, Any]) -> str:
    return table(["target", "measured", "verdict"], _target_rows(r), "lll")


def _relay_table(r: Dict[str, Any], workload: str) -> str:
    data = r["relays"][workload]
    s = {relay: data[relay]["summary"] for relay in RELAYS}
    a = s["agentstream"]
    header = ["per turn", *[LABELS[x] for x in RELAYS], "post-once ÷ agentstream", "post-per-delta ÷ agentstream"]
    rows = []

    def row(label: str, get: Callable[[Dict[str, Any]], Optional[float]], show: Callable[[Optional[float]], str],
            ratios: bool = True) -> None:
        values = [get(s[x]) for x in RELAYS]
        cells = [show(v) for v in values]
        extra = [ratio(values[1], values[0]), ratio(values[2], values[0])] if ratios else ["", ""]
        rows.append([label, *cells, *extra])

    spread = len(data["agentstream"]["runs"]) > 1

    row("time to first token, over the agent's", lambda x: x["ttft_overhead_ms"], ms)
    if spread:
        rows.append(["  (min – max over runs)", *[f"{ms(s[x]['ttft_overhead_ms_min'])} – {ms(s[x]['ttft_overhead_ms_max'])}"
                                                  for x in RELAYS], "", ""])
    row("end-of-stream lag: last text after the agent's last delta", lambda x: x["eos_lag_ms"], ms)
    if spread:
        rows.append(["  (min – max over runs)", *[f"{ms(s[x]['eos_lag_ms_min'])} – {ms(s[x]['eos_lag_ms_max'])}"
                                                  for x in RELAYS], "", ""])
    row("… to the terminal `done` frame", lambda x: x["terminal_lag_ms"], ms, ratios=False)
    row("API Gateway messages (the turn's posts)", lambda x: x["messages"], num)
    row("… billed (32 KB units)", lambda x: x["units"], num)
    row("bytes posted", lambda x: x["bytes"], lambda v: kb(v))
    row("largest message", lambda x: x["max_message_bytes"], lambda v: kb(v))
    row("worker CPU (process time)", lambda x: x["cpu_ms"], ms)
    row("DynamoDB requests (the worker's: turn record, slots, token totals)", lambda x: x["dynamodb_requests"], num,
        ratios=False)
    row("… their write capacity units (estimated)", lambda x: x["dynamodb_write_units"], num, ratios=False)
    row("text latency p50 (agent sent → client has it)", lambda x: x["delta_latency_ms"]["p50"], ms)
    row("text latency p95", lambda x: x["delta_latency_ms"]["p95"], ms)
    row("text latency max", lambda x: x["delta_latency_ms"]["max"], ms)
    row("longest wait in the worker before a post started", lambda x: x["hold_ms"]["max"], ms)
    row("… past max(flush interval, the post in flight)", lambda x: x["excess_hold_ms"]["max"], ms, ratios=False)
    row("one post, start → client (the management API's time)", lambda x: x["post_ms"]["p50"], ms, ratios=False)
    rows.append(["answer intact, every run", *["yes" if s[x]["ok"] else "**no**: " + "; ".join(s[x]["errors"][:1])
                                               for x in RELAYS], "", ""])
    agent = a["agent"]
    note = (f"The agent: {num(agent['deltas'])} deltas, {num(agent['characters'])} characters, first delta "
            f"{ms(agent['first_ms'])} and last {ms(agent['last_ms'])} after the request (medians).")
    return table(header, rows) + "\n\n" + note


def _stream(r: Dict[str, Any]) -> str:
    return _relay_table(r, "stream") + f"\n\n![Text delivered over time, three relays, 400 deltas]({r['plot']})"


def _long(r: Dict[str, Any]) -> str:
    if "long" not in r["relays"]:
        return "_Not run (`--long-s 0`)._"
    return _relay_table(r, "long")


def _big(r: Dict[str, Any]) -> str:
    return _relay_table(r, "big")


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _coldstart(r: Dict[str, Any]) -> str:
    c = r.get("coldstart")
    if not c:
        return "_Not run._"
    boto3 = _median(c["boto3_s"]) * 1000
    rows = [
        ["`import boto3` (alone)", ms(boto3), "1.00×"],
        ["`import app`, source tree, bytecode cached", ms(_median(c["app_s"]) * 1000),
         f"{_median(c['app_s']) * 1000 / boto3:.2f}×"],
    ]
    if c.get("boto3_deployed_s"):
        rows.append(["`import boto3` from the package's layer, as on Lambda (the layer's `.pyc`, nothing written)",
                     ms(_median(c["boto3_deployed_s"]) * 1000), f"{_median(c['boto3_deployed_s']) * 1000 / boto3:.2f}×"])
    if c.get("app_deployed_s"):
        rows.append(["`import app`, deployment package + layer, as on Lambda (the package's `.pyc`, nothing written)",
                     ms(_median(c["app_deployed_s"]) * 1000), f"{_median(c['app_deployed_s']) * 1000 / boto3:.2f}×"])
    imports = table(["import, fresh interpreter (median of %d)" % c["runs"], "time", "÷ `import boto3`"], rows)
    parts = sorted(c["app_breakdown_ms"].items(), key=lambda kv: -kv[1])
    breakdown = ", ".join(f"{name} {value:.1f} ms" for name, value in parts if value >= 0.5)
    handler_rows = []
    for name, h in c["handlers"].items():
        handler_rows.append([
            f"`{name}`", ms(h["import_ms"]), ms(h["first_ms"]), ms(h["second_ms"]),
            ms(h["import_cpu_ms"] + h["first_cpu_ms"]), "yes" if h["ok"] else "**no**",
        ])
    handlers = table(["handler (fresh container)", "import `app`", "first invocation (creates its clients)",
                      "second invocation", "CPU, import + first", "ok"], handler_rows)
    where = ("from the unpacked deployment package and its layer, with the bytecode it ships and nothing written, as Lambda runs them"
             if c.get("chains_deployed") else "from the source tree")
    return f"""{imports}

Where `import app`'s time goes (`python -X importtime`, self time per top-level package): {breakdown}.
boto3 is not among them: `chalicelib/aws.py` imports it on first use, so each handler pays for it
in its first invocation (below), together with creating the clients it needs.

{handlers}

A chain of fresh interpreters, one per handler ({where}), against moto and the emulators with no added latency:
`websocket_connect` for two connections, `websocket_message` for three asks, `turn_worker` for those
three turns (the third a 100,000-character answer), `websocket_disconnect` for both connections.
Medians of {c['chain_runs']} chains. Times are on this machine's full core; Lambda gives a function
CPU in proportion to its memory (one vCPU at {LAMBDA_MB_PER_VCPU:,} MB), see *Memory*."""


def _observability(r: Dict[str, Any]) -> str:
    c = r.get("coldstart") or {}
    obs = c.get("observability")
    if not obs:
        return "_Not run._"
    from bench.probe import WATCHED

    def med(kind: str, key: str) -> float:
        return _median([s[key] for s in obs[kind]])

    before_ms, after_ms = med("before", "before_s") * 1000, med("after", "after_s") * 1000
    before_mb, after_mb = med("before", "before_mb"), med("after", "after_mb")
    in_process_mb = _median([s["after_mb"] - s["before_mb"] for s in obs["after"]])
    tracer_mb = _median([s["tracer_mb"] - s["before_mb"] for s in obs["after"]])
    steps_ms = _median([(s["tracer_s"] + s["consumers_s"] + s["metrics_s"]) * 1000 for s in obs["after"]])
    outside_ms = med("after_outside_lambda", "tracer_s") * 1000
    outside_mb = _median([s["tracer_mb"] - s["before_mb"] for s in obs["after_outside_lambda"]])
    enabled = not any(s["tracer_disabled"] for s in obs["after"])
    rows = [
        ["before: `import app` (the worker's modules with it) and `import boto3`", ms(before_ms), f"{before_mb:.1f} MB"],
        ["after: the same, then `chalicelib.tracing.tracer()`: the X-Ray SDK imported, botocore patched"
         + ("" if enabled else " (**the Tracer disabled itself**)"),
         "+" + ms(med("after", "tracer_s") * 1000), f"+{tracer_mb:.1f} MB"],
        ["… then the turn report's consumers imported (`metrics`, `metering`, `eventbus`)",
         "+" + ms(med("after", "consumers_s") * 1000), ""],
        ["… then the first metrics line (Powertools `EphemeralMetrics`, `aws_lambda_powertools.metrics`)",
         "+" + ms(med("after", "metrics_s") * 1000), ""],
        ["**after, in all** (in the same process: the three steps above)", f"**{ms(after_ms)}** (+{ms(steps_ms)})",
         f"**{after_mb:.1f} MB** (+{in_process_mb:.1f} MB)"],
        ["after − before, across the two kinds of process (medians; noisier)", f"{after_ms - before_ms:+.1f} ms",
         f"{after_mb - before_mb:+.1f} MB"],
        ["for comparison: `tracer()` outside Lambda (the local stack, the other phases): disabled, patches nothing",
         ms(outside_ms), f"+{outside_mb:.1f} MB"],
    ]
    handlers = c.get("handlers") or {}
    lines = []
    for name, h in handlers.items():
        if "loaded" not in h:
            continue
        loaded = [m for m in WATCHED if m in h["loaded"]]
        missing = [m for m in WATCHED if m not in h["loaded"]]
        lines.append(f"- `{name}`: loaded {', '.join(f'`{m}`' for m in loaded) or 'none of them'}"
                     + (f"; not {', '.join(f'`{m}`' for m in missing)}" if missing else "") + ".")
    checked = ("\n\nWhich of these modules each fresh handler container of the chain above had loaded after its "
               "invocations (`sys.modules`):\n\n" + "\n".join(lines)) if lines else ""
    return table([f"the worker's cold path, fresh interpreter with `LAMBDA_TASK_ROOT` and a trace header set "
                  f"(median of {obs['runs']})", "time", "peak RSS"], rows) + checked


def _memory(r: Dict[str, Any]) -> str:
    c = r.get("coldstart")
    if not c:
        return "_Not run._"
    configured = r.get("memory_config", {})
    rows = []
    for name, h in c["handlers"].items():
        mb = configured.get(name)
        cpu_ms = h["import_cpu_ms"] + h["first_cpu_ms"]
        estimate = "–" if not mb else ms(cpu_ms * LAMBDA_MB_PER_VCPU / mb)
        rows.append([f"`{name}`", f"{h['after_import_rss_mb']:.0f} MB", f"{h['peak_rss_mb']:.0f} MB",
                     f"{mb} MB" if mb else "–", f"{mb / h['peak_rss_mb']:.1f}×" if mb else "–", estimate])
    worker = r["relays"]["stream"]["agentstream"]["summary"]
    share = None
    if worker["cpu_ms"] and worker["agent"]["last_ms"]:
        share = worker["cpu_ms"] / (worker["agent"]["last_ms"] + (worker["terminal_lag_ms"] or 0))
    tail = ""
    if share is not None:
        need = share * LAMBDA_MB_PER_VCPU
        tail = (f"\n\nWhile it streams, the worker needs {share * 100:.1f} % of a vCPU on the 400-delta workload "
                f"({ms(worker['cpu_ms'])} of CPU over the turn), the CPU Lambda gives a function of about "
                f"{need:.0f} MB: below that, the relay itself would slow down.")
    return table(["handler", "RSS after `import app`", "peak RSS", "configured", "headroom",
                  "cold start CPU at that size (estimate)"], rows) + f"""

Peak resident memory (`VmHWM`) of each fresh handler process through the chain above, the worker's
through the 100,000-character turn. The estimate scales the measured CPU of import + first invocation
by Lambda's CPU share at the configured memory (`.chalice/config.json`); it leaves out I/O waits, so
real cold starts are longer.{tail}"""


def _size(r: Dict[str, Any]) -> str:
    s = r.get("size")
    if not s:
        return "_Not run._"
    rows = []
    total = s["all"]["zip_bytes"]
    for row in s["all"]["rows"]:
        rows.append([row["dependency"], row["version"], row["pulled_in_by"], num(row["files"]),
                     kb(row["zipped_bytes"]), kb(row["unzipped_bytes"]) if row["unzipped_bytes"] else "",
                     f"{row['zipped_bytes'] / total * 100:.1f} %"])
    zips = ", ".join(f"`{name}` {kb(size)}" for name, size in s["zips"].items())
    by_req = ", ".join(f"{name} {kb(size)}" for name, size in sorted(s["all"]["by_requirement"].items(),
                                                                     key=lambda kv: -kv[1]))
    return f"""Built with `{s['how']}`: {zips}; {kb(s['all']['unzipped_bytes'])} unpacked, {s['all']['files']} files,
{'with' if s['all']['has_bytecode'] else 'no'} bytecode (`.pyc`). By requirement (`requirements.txt`, with what it pulls in): {by_req}.

{table(["in the package", "version", "pulled in by", "files", "zipped", "unpacked", "share"], rows, "lllrrrr")}"""


def _capacity(r: Dict[str, Any]) -> str:
    caps = r.get("capacity")
    if not caps:
        return "_Not run._"
    out = []
    for pace, c in caps.items():
        rows = []
        for step in c["steps"]:
            q = step["chunk_latency_ms"]
            rows.append([num(step["connections"]), num(step["peak_concurrent_streams"]), ms(q["p50"]), ms(q["p95"]),
                         ms(q["p99"]), ms(q["max"]), ms(step["delta_latency_ms"]["p95"]),
                         f"{step['agent_stretch'] or 0:.2f}×", f"{step['ok_turns']}/{step['connections']}",
                         "held" if step["held"] else "**no**"])
        posts = f"{c['post_ms']:g} ms posts" if c["post_ms"] else "posts with no added latency, as `make run` has them"
        head = (f"**{c['delta_ms']:g} ms deltas** ({1000 / c['delta_ms']:.0f} per second per connection, {c['deltas']} per "
                f"turn, {posts}): holds **{c['holds']}** connections"
                + (f"; at {c['first_failure']} it no longer does."
                   if c["first_failure"] else " (the most tried)."))
        out.append(head + "\n\n" + table(
            ["connections", "streaming at once", "chunk p50", "chunk p95", "chunk p99", "chunk max", "text p95",
             "agent's pace", "turns ok", f"p95 ≤ {c['threshold_ms']:g} ms"], rows))
    return "\n\n".join(out) + """

Chunk latency: when a client received a chunk minus when the agent sent the newest delta in it (the
stack's own delay: management API, relay, event loop). Text latency adds the coalescing wait by design.
"Agent's pace": how much longer the emulated agent took to send its deltas than scheduled; above
1× the one process running the stack is short of CPU and everything in it slows down together."""


def _pq(spread: Optional[Dict[str, Optional[float]]]) -> str:
    """``p50 / p90`` of a per-turn figure, in ms."""
    spread = spread or {}
    return f"{ms(spread.get('p50'))} / {ms(spread.get('p90'))}"


def _scale_label(level: Dict[str, Any], default: int) -> str:
    k, late = level["k"], level.get("late") or 0
    if late:
        return f"{k}: {k - late} at once, then {late} joining"
    return f"{k}" + (" (one turn per execution)" if k == 1 else (" (the default)" if k == default else ""))


def _scale(r: Dict[str, Any]) -> str:
    sc = r.get("scale")
    if not sc or not sc.get("levels"):
        return "_Not run._"
    from bench.scale import CAP_MARGIN_MS, IN_FLIGHT, LAMBDA_MB_PER_VCPU as MB_PER_VCPU, MEMORY_STEP_MB, \
        TTFT_LIMIT_MS, derive, verdicts

    w = sc["workload"]
    m = sc.get("machine") or r.get("machine") or {}
    d = derive(sc)
    default = d["default_turns"]
    levels = sorted(sc["levels"].values(), key=lambda level: (level["k"], level.get("late") or 0))
    loads = ", ".join(f"{load[0]:.1f} {when}" for when, load in sc.get("load_average", {}).items())
    joining = next((lv for lv in levels if lv.get("late")), None)
    setup = (f"Run {sc['started']} ({sc['duration_s'] / 60:.1f} minutes, `{sc.get('command', 'python -m bench --only scale')}`) "
             f"on {m.get('cpu', '?')} ({m.get('cores', '?')} cores, the emulators, moto and the worker together), "
             f"Python {m.get('python', '?')}, app code at {sc.get('code', 'an unrecorded revision')}; load average {loads}. Each turn: {w['deltas']} deltas over "
             f"{w['answer_s']:g} s after a {w['first_token_ms']:g} ms first token, {w['post_ms']:g} ms per post, "
             f"{w['flush_ms']} ms flush interval. {w['rounds']} round(s) of every level (one turn alone "
             f"{w['rounds'] * w['baseline_per_round']} times), levels interleaved.")

    def intact(level: Dict[str, Any]) -> str:
        return f"{level['turns']}/{level['turns']}" if level["ok"] else "**no**: " + "; ".join(level["errors"][:1])

    rows = []
    for level in levels:
        k, late = level["k"], level.get("late") or 0
        share = level["cpu_share"] or 0
        ttft = level["late_ttft_overhead_ms"] if late else level["ttft_overhead_ms"]
        start = level["late_start_ms"] if late else level["start_ms"]
        busy = level["machine_busy"] or 0
        rows.append([
            _scale_label(level, default), f"{level['wall_s']:.1f} s", f"{level['cpu_s']:.2f} s",
            f"{level['cpu_s'] / k:.2f} s", f"{share * 100:.0f} %", f"{level['peak_rss_mb']:.0f} MB",
            _pq(ttft) + (" (joining)" if late else ""), _pq(level["terminal_lag_ms"]), _pq(level["eos_lag_ms"]),
            _pq(start) + (" (queued → agent)" if late else ""), ms(level["text_p95_ms"]["p50"]), num(level["messages"]),
            f"{level['agent_stretch'] or 0:.3f}×", f"{busy * 100:.0f} %" + (" ⚠" if busy > 0.9 else ""), intact(level),
        ])
    measured = table(["turns in the execution (K)", "execution", "worker CPU", "CPU per turn", "% of a vCPU", "peak RSS",
                      "first-token overhead p50 / p90", "end lag to `done` p50 / p90", "… to the last text",
                      "start → agent request p50 / p90", "text latency p95", "posts per turn", "agent's pace",
                      "machine busy", "turns intact"],
                     rows)
    saturated = [_scale_label(lv, default) for lv in levels if (lv["machine_busy"] or 0) > 0.9]
    notes = []
    if saturated:
        notes.append(f"⚠ This machine's {m.get('cores', '?')} cores were more than 90 % busy during: "
                     f"{', '.join(saturated)}. The emulators, moto and the clients share them with the worker, so those "
                     f"levels measure this machine as much as the worker (the worker's CPU share there is a floor, its "
                     f"latencies a ceiling).")
    if joining is not None:
        notes.append(f"*{_scale_label(joining, default)}*: the invocation's batch is {joining['k'] - joining['late']} "
                     f"turns; {joining['late']} more are queued {w['answer_s'] / 3:.1f} s in, while those stream, and the "
                     f"worker's refills take them (short polls, at most one a second when the queue was empty). Its "
                     f"first-token figures are the joining turns'; its start is from the queue to the agent's request.")

    size_rows = []
    for level in levels:
        if level.get("late"):
            continue
        k = level["k"]
        size = d["rule_sizes"][str(k)]
        bound = {"CPU": f"CPU: {level['cpu_share'] * 100:.0f} % of a vCPU ÷ {w['utilization'] * 100:.0f} %",
                 "memory": f"memory: {level['peak_rss_mb']:.0f} MB × {w['rss_headroom']:g}",
                 "minimum": "Lambda's minimum"}[size["bound"]]
        basis = d["basis"].get(str(k))
        checked = f"{basis['memory_mb']:,} MB" if basis and basis["how"] == "checked" else ""
        if not checked and any(c["k"] == k for c in (sc.get("check") or {}).get("configs", [])):
            checked = "**none passed**"
        size_rows.append([str(k), f"{size['memory_mb']:,} MB", f"{size['vcpu']:.2f}", bound,
                          f"{size['gb_s_per_turn']:.2f}", f"{size['gb_s_per_turn_configured']:.2f}", checked,
                          "**needs more than one vCPU** (one Python process uses one)" if size["over_one_vcpu"] else ""])
    sizes = table(["K", "memory (rule)", "vCPU", "set by", "GB-s per turn", f"… at {d['configured_mb']} MB",
                   "smallest that passed the check", "note"], size_rows, "llrlrrll")

    one, pooled = d["basis"].get("1"), d["basis"].get(str(default))
    flight_rows = []
    for row in d["in_flight"]:
        cells = [f"{row['in_flight']:,}", f"{row['batch1_executions']:,}", f"{row['default_executions']:,}",
                 f"{row['executions_ratio']:.0f}×"]
        if "gb_s_ratio" in row:
            cells += [f"{row['batch1_gb_s_per_turn']:.2f} ({row['batch1_configured_gb_s_per_turn']:.2f})",
                      f"{row['default_gb_s_per_turn']:.2f}", f"{row['gb_s_ratio']:.2f}× ({row['gb_s_ratio_configured']:.2f}×)",
                      f"{row['batch1_memory_gb']:,.0f} GB", f"{row['default_memory_gb']:,.0f} GB"]
        flight_rows.append(cells)
    header = ["turns in flight", "executions, one turn each", f"executions, {default} turns each", "fewer"]
    if one and pooled:
        header += [f"GB-s per turn, one turn each at {one['memory_mb']:,} MB (at {d['configured_mb']} MB)",
                   f"GB-s per turn, {default} each at {pooled['memory_mb']:,} MB",
                   f"fewer (against {d['configured_mb']} MB)", "memory held, one turn each", f"memory held, {default} each"]
    flight = table(header, flight_rows)
    basis_how = ("the smallest sizes that passed the CPU-capped check below, with those runs' durations"
                 if one and pooled and one["how"] == pooled["how"] == "checked" else "the sizes the rule above gives")

    check = sc.get("check") or {}
    if check.get("configs"):
        check_rows = []
        for c in check["configs"]:
            late = c.get("late") or 0
            check_rows.append([
                _scale_label(c, default), f"{c['memory_mb']:,} MB ({c['why']})", f"{c['vcpu']:.2f}",
                f"{c['cpu_s']:.2f} s", f"{c['cpu_share'] * 100:.0f} %",
                f"{c['throttled_periods'] / c['periods'] * 100:.0f} %" if c["periods"] else "–",
                _pq(c["late_ttft_overhead_ms"] if late else c["ttft_overhead_ms"]) + (" (joining)" if late else ""),
                _pq(c["terminal_lag_ms"]), _pq(c["late_start_ms"] if late else c["start_ms"]),
                ms(c["text_p95_ms"]["p50"]), num(c["messages"]),
                f"{c['wall_s']:.1f} s", f"{c['gb_s_per_turn']:.2f}", intact(c), "yes" if c["passes"] else "**no**",
            ])
        checked = (f"**The sizes checked under Lambda's CPU share.** The same turns again, each worker process held "
                   f"by a cgroup CPU quota to the share Lambda gives that memory (memory ÷ {MB_PER_VCPU:,} MB of a "
                   f"vCPU; CFS period {check['period_us'] / 1000:g} ms, Lambda's own is not published). *Passes*: every "
                   f"turn whole; first-token overhead ≤ {TTFT_LIMIT_MS:g} ms at p50; and no more than "
                   f"{CAP_MARGIN_MS:g} ms added by the cap to the end lag (`done`, p50) or to the text latency (p95) of "
                   f"the same level run uncapped (above).\n\n" + table(
                       ["K", "memory", "vCPU", "worker CPU", "% of a vCPU used", "periods throttled",
                        "first-token overhead p50 / p90", "end lag to `done` p50 / p90", "start → agent request",
                        "text latency p95", "posts per turn", "execution", "GB-s per turn", "turns intact", "passes"],
                       check_rows))
    else:
        checked = f"_The sizes were not checked under a CPU cap here: {check.get('why_not') or 'not run'}._"

    verdict_rows = [[v["target"], v["measured"], "met" if v["ok"] else "**missed**"] for v in verdicts(sc)]
    in_flight = ", ".join(f"{n:,}" for n in IN_FLIGHT)
    return f"""{setup}

{measured}

*Execution* is the invocation's wall time and *worker CPU* the process's CPU time over it (median of
the runs); *% of a vCPU* is one over the other; *peak RSS* is the process's `VmHWM` over its life
(its warm-up included). Per-turn figures are percentiles over every turn of every run. *Text
latency p95*: each turn's 95th percentile of agent sent → client has it, over its {w['deltas']} deltas (the
median turn's). *Agent's pace* above 1× means the emulated agent (in the bench's own process) fell
behind its schedule.{''.join(chr(10) + chr(10) + n for n in notes)}

**Lambda memory per level.** The rule: the smallest multiple of {MEMORY_STEP_MB} MB that holds the peak RSS
× {w['rss_headroom']:g} and gives the measured CPU at most {w['utilization'] * 100:.0f} % of its share. GB-seconds per
turn = memory × execution ÷ K.

{sizes}

{checked}

**At {in_flight} turns in flight**, one turn per execution against {default} (executions counted full:
the batch, then refills from the queue), at {basis_how}:

{flight}

{table(["target", "measured", "verdict"], verdict_rows, "lll")}"""


def _quantity(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


COST_ITEMS = (
    ("lambda_request", "Lambda requests", "`$default` + the worker's invocation ÷ turns in it"),
    ("lambda_gb_s", "Lambda GB-seconds", "`$default` + worker memory × its duration ÷ turns in it"),
    ("apigw_message", "API Gateway messages", "posts in 32 KB units, the ask, `accepted`"),
    ("apigw_minute", "API Gateway connection minutes", "the ask to the last frame"),
    ("dynamodb_wru", "DynamoDB write request units", "`$default` + worker, counted"),
    ("dynamodb_rru", "DynamoDB read request units", "`$default` + worker, counted"),
    ("sqs_request", "SQS requests", "send, Lambda's receive and delete, refill polls ÷ turns"),
    ("eventbridge_event", "EventBridge events", "the turn event, counted"),
)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:,.0f} s"


def _cost(r: Dict[str, Any]) -> str:
    if not (r.get("relays") or {}).get("stream"):
        return "_Not run._"
    from bench import cost

    turns = {w: cost.per_turn(r, w) for w in cost.workloads(r)}
    main = turns["stream"]
    agent = r["relays"]["stream"]["agentstream"]["summary"]["agent"]
    header = [f"per turn ({agent['deltas']:,.0f} deltas in {_seconds(agent['last_ms'] / 1000)})", "unit price"]
    for relay in RELAYS:
        header += [LABELS[relay], "per 1,000 turns"]
    rows = []
    for item, label, how in COST_ITEMS:
        row = [f"{label} ({how})", cost.PRICES[item]["shown"].split(" (")[0].split(",")[0]]
        for relay in RELAYS:
            row += [_quantity(main[relay]["quantities"][item]), cost.usd_per_1000(main[relay]["usd"][item])]
        rows.append(row)
    rows.append(["**AWS, all of the above**", ""] + [cell for relay in RELAYS
                 for cell in ("", f"**{cost.usd_per_1000(main[relay]['infrastructure_usd'])}**")])
    tokens = main["agentstream"]["output_tokens"]
    rows.append([f"Bedrock tokens, for scale ({cost.INPUT_TOKENS:,} in + {tokens:,} out, {cost.MODEL['name']})",
                 cost.MODEL["shown"]] + [cell for relay in RELAYS
                                         for cell in ("", cost.usd_per_1000(main[relay]["bedrock_usd"]))])
    rows.append(["**Total**", ""] + [cell for relay in RELAYS for cell in (
        "", f"**{cost.usd_per_1000(main[relay]['infrastructure_usd'] + main[relay]['bedrock_usd'])}**")])
    rows.append(["AWS's share of the total", ""] + [cell for relay in RELAYS for cell in (
        "", f"{main[relay]['infrastructure_usd'] / (main[relay]['infrastructure_usd'] + main[relay]['bedrock_usd']):.1%}")])
    first = table(header, rows, "ll" + "rr" * len(RELAYS))

    names = {"stream": "the 400-delta answer", "long": "the long answer (the same deltas, spread out)",
             "big": "the 100,000-character answer"}
    summary_rows = []
    for w, by_relay in turns.items():
        seconds = r["relays"][w]["agentstream"]["summary"]["agent"]["last_ms"] / 1000
        ours = by_relay["agentstream"]["infrastructure_usd"]
        summary_rows.append(
            [f"{names[w]} ({_seconds(seconds)}, {by_relay['agentstream']['output_tokens']:,} output tokens)"]
            + [cost.usd_per_1000(by_relay[relay]["infrastructure_usd"])
               + ("" if relay == "agentstream" else f" ({ratio(by_relay[relay]['infrastructure_usd'], ours)})")
               for relay in RELAYS]
            + [cost.usd_per_1000(by_relay["agentstream"]["bedrock_usd"])])
    second = table(["AWS per 1,000 turns, by answer", *[LABELS[x] for x in RELAYS], "Bedrock tokens (the same for all)"],
                   summary_rows)

    ours = main["agentstream"]
    baselines = ", ".join(
        f"{LABELS[relay]} {main[relay]['worker_mb']:,} MB (it used {cost.baseline_memory_mb(r, relay)['cpu_share']:.1%} "
        f"of a vCPU on the 400-delta answer)" for relay in RELAYS if relay != "agentstream")
    polls = {w: by_relay["agentstream"]["refill_polls"] for w, by_relay in turns.items()}
    price_rows = [[label, cost.PRICES[item]["shown"], cost.PRICES[item]["source"],
                   "yes" if cost.PRICES[item]["confirmed"] else "**no**: the figure from the source named"]
                  for item, label, _ in COST_ITEMS]
    price_rows.append([f"Bedrock, {cost.MODEL['name']}", cost.MODEL["shown"], cost.MODEL["source"],
                       "yes" if cost.MODEL["confirmed"] else "**no**: Anthropic's own price"])
    prices = table(["item", "price", "source", "confirmed in AWS's own text"], price_rows, "llll")
    return f"""{first}

{second}

From this run (medians): `$default` took {ours['ask_s'] * 1000:.0f} ms, priced at {ours['default_mb']} MB (its configured
size), for every relay; agentstream's worker {ours['wall_s']:.2f} s a turn at {ours['worker_mb']:,} MB,
{ours['turns_per_execution']} turns to an execution; the baselines one turn an execution, at the memory the scale rule gives
them: {baselines}. Refill polls counted in agentstream's one-turn executions:
{', '.join(f'{n:g} on {names[w]}' for w, n in polls.items())}, shared here by the {ours['turns_per_execution']} turns of a
pooled execution. Prices for {cost.REGION}, on demand, the first tier, read {cost.PRICES_READ}:

{prices}"""


RENDER = {"setup": _setup, "targets": _targets, "stream": _stream, "long": _long, "big": _big,
          "coldstart": _coldstart, "observability": _observability, "memory": _memory, "size": _size,
          "capacity": _capacity, "scale": _scale, "cost": _cost}

SKELETON = """# Benchmarks

agentstream's relay against the two relays users pick today, on the same agent and the same
management API. `make bench` regenerates everything between the `bench:` markers.

## Setup
<!-- bench:setup -->
<!-- /bench:setup -->

## Targets
<!-- bench:targets -->
<!-- /bench:targets -->

## 400 deltas, 5 ms apart
<!-- bench:stream -->
<!-- /bench:stream -->

## A long answer
<!-- bench:long -->
<!-- /bench:long -->

## A 100,000-character answer
<!-- bench:big -->
<!-- /bench:big -->

## Cold start
<!-- bench:coldstart -->
<!-- /bench:coldstart -->

### The observability code on the worker's first turn
<!-- bench:observability -->
<!-- /bench:observability -->

## Memory
<!-- bench:memory -->
<!-- /bench:memory -->

## Deployment package
<!-- bench:size -->
<!-- /bench:size -->

## Local stack capacity
<!-- bench:capacity -->
<!-- /bench:capacity -->

## One worker, many turns
<!-- bench:scale -->
<!-- /bench:scale -->

## Cost per 1,000 turns
<!-- bench:cost -->
<!-- /bench:cost -->
"""


def write_doc(path: Path, results: Dict[str, Any], regions: Optional[Sequence[str]] = None) -> None:
    """Rewrite every region (or only ``regions``) of the doc from ``results``."""
    text = path.read_text() if path.exists() else SKELETON
    for name in regions or REGIONS:
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if begin not in text or end not in text:
            text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
        body = RENDER[name](results).strip()
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        text = pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)
    path.write_text(text)


# ---- the plot ---------------------------------------------------------------------------------

COLORS = {"agent": "#999999", "agentstream": "#1f77b4", "post_once": "#d62728", "post_per_delta": "#ff7f0e"}


def plot(results: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stream = results["relays"]["stream"]
    w = results["workload"]
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    agent_curve = stream["agentstream"]["representative"]["curve"]["agent"]

    def steps(curve: List[Tuple[float, int]], origin: float = 0.0, scale: float = 1.0) -> Tuple[List[float], List[int]]:
        xs, ys = [0.0], [0]
        for t, chars in curve:
            xs += [(t - origin) * scale, (t - origin) * scale]
            ys += [ys[-1], chars]
        return xs, ys

    for axis, origin, scale in ((whole, 0.0, 1.0),):
        x, y = steps(agent_curve, origin, scale)
        axis.plot(x, y, color=COLORS["agent"], lw=3, alpha=0.5, label="agent (deltas sent)")
        for relay in RELAYS:
            x, y = steps(stream[relay]["representative"]["curve"]["client"], origin, scale)
            axis.plot(x, y, color=COLORS[relay], lw=1.4, label=f"{LABELS[relay]} (client received)")
    whole.set_xlabel("seconds since the agent received the request")
    whole.set_ylabel("characters of the answer")
    whole.set_title(f"{w['deltas']} deltas {w['delta_ms']:g} ms apart, {w['post_ms']:g} ms per post")
    whole.legend(loc="lower right", fontsize=8)
    whole.grid(alpha=0.3)

    total = agent_curve[-1][1]
    x, y = steps(agent_curve, agent_curve[-1][0], 1000)
    zoom.plot(x, y, color=COLORS["agent"], lw=3, alpha=0.5, label="agent")
    for relay in RELAYS:  # each run against its own agent's last delta
        curve = stream[relay]["representative"]["curve"]
        x, y = steps(curve["client"], curve["agent"][-1][0], 1000)
        zoom.plot(x, y, color=COLORS[relay], lw=1.4, label=LABELS[relay])
    for relay in RELAYS:
        lag = stream[relay]["representative"].get("eos_lag_ms")
        if lag is not None and lag > 150:
            zoom.text(-290, total * 0.81, f"{LABELS[relay]}: done {lag / 1000:.1f} s after the agent,\noff this chart",
                      color=COLORS[relay], fontsize=8, va="bottom")
    zoom.set_xlim(-300, 150)
    zoom.set_ylim(total * 0.8, total * 1.02)
    zoom.axvline(0, color="black", lw=0.6, ls=":")
    zoom.set_xlabel("ms from the agent's last delta (of each run)")
    zoom.set_title("the end of the stream, magnified")
    zoom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())
