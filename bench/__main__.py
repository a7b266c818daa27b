"""``python -m bench`` (what ``make bench`` runs): every benchmark, then docs/benchmarks.md.

Phases, in order: the three relays side by side (400 deltas, the 100,000-character answer, the long
answer; their counted requests also give the cost per 1,000 turns, ``bench.cost``), the deployment
package, cold start and memory (with the worker's observability code before and after), one worker
streaming many turns (``scale``), the local stack's capacity. Raw results go to build/bench/results.json, worker and stack logs to
build/bench/; the tables go to docs/benchmarks.md (only between its ``bench:`` markers) and the plot
to docs/.

    python -m bench                  # everything, about 25 minutes (scale alone is about 18)
    python -m bench --quick          # a smoke run: fewer runs, a 10 s long answer, small capacity steps
    python -m bench --only scale     # one phase (or several, comma-separated); the others' results are kept
    python -m bench --report-only    # rewrite docs/benchmarks.md and the plot from results.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict

from bench.stack import ROOT

OUT = ROOT / "build" / "bench"
PHASES = ("relays", "size", "coldstart", "scale", "capacity")
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks-400-deltas.png"


def say(line: str) -> None:
    print(line, flush=True)


def machine() -> Dict[str, Any]:
    import boto3
    import botocore
    import chalice

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "chalice": chalice.__version__,
    }


def _command(argv: Any) -> str:
    args = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if os.environ.get("MAKELEVEL"):  # started by `make bench`
        return "make bench" + (f" BENCH_ARGS={shlex.quote(args)}" if args else "")
    return ("python -m bench " + args).strip()


def memory_config(stage: str = "dev") -> Dict[str, int]:
    """Each function's ``lambda_memory_size`` as Chalice resolves it for ``stage``."""
    try:
        config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    stage_config = config.get("stages", {}).get(stage, {})
    for name in ("websocket_connect", "websocket_message", "websocket_disconnect", "turn_worker"):
        for source in (stage_config.get("lambda_functions", {}).get(name, {}), stage_config,
                       config.get("lambda_functions", {}).get(name, {}), config):
            if "lambda_memory_size" in source:
                out[name] = int(source["lambda_memory_size"])
                break
        else:
            out[name] = 128  # Chalice's default
    return out


def main(argv: Any = None) -> int:
    from bench.relays import Workload

    defaults = Workload()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deltas", type=int, default=defaults.deltas, help="deltas per answer (%(default)s)")
    parser.add_argument("--delta-ms", type=float, default=defaults.delta_ms, help="ms between deltas (%(default)s)")
    parser.add_argument("--first-token-ms", type=float, default=defaults.first_token_ms,
                        help="agent's first-token delay (%(default)s)")
    parser.add_argument("--post-ms", type=float, default=defaults.post_ms, help="ms per management API post (%(default)s)")
    parser.add_argument("--flush-ms", type=int, default=defaults.flush_ms, help="agentstream's FLUSH_INTERVAL_MS (%(default)s)")
    parser.add_argument("--runs", type=int, default=defaults.runs, help="runs per relay of the 400-delta answer (%(default)s)")
    parser.add_argument("--long-s", type=float, default=defaults.long_s, help="seconds of the long answer; 0 skips it (%(default)s)")
    parser.add_argument("--big-chars", type=int, default=defaults.big_chars, help="size of the big answer (%(default)s)")
    parser.add_argument("--import-runs", type=int, default=9, help="fresh interpreters per import timing (%(default)s)")
    parser.add_argument("--chains", type=int, default=3, help="cold handler chains (%(default)s)")
    parser.add_argument("--capacity-max", type=int, default=400, help="most connections tried (%(default)s)")
    parser.add_argument("--capacity-s", type=float, default=6.0, help="seconds each capacity turn streams (%(default)s)")
    parser.add_argument("--capacity-post-ms", type=float, default=0.0,
                        help="post latency of the local stack under test; 0 is `make run`'s default (%(default)s)")
    parser.add_argument("--scale-levels", default="1,5,10,20", help="turns per worker execution to measure (%(default)s)")
    parser.add_argument("--scale-answer-s", type=float, default=20.0, help="seconds each scale turn streams (%(default)s)")
    parser.add_argument("--scale-deltas", type=int, default=600, help="deltas per scale turn (%(default)s)")
    parser.add_argument("--scale-rounds", type=int, default=4, help="rounds of every scale level (%(default)s)")
    parser.add_argument("--no-cpu-cap", action="store_true",
                        help="skip the scale check under a Lambda-like CPU share (a cgroup; needs root)")
    parser.add_argument("--skip", default="", help="phases to skip, comma-separated: " + ",".join(PHASES[1:]))
    parser.add_argument("--only", default="",
                        help="run only these phases, comma-separated (" + ",".join(PHASES) + "); results.json keeps "
                             "the others' results and only their sections of the doc are rewritten")
    parser.add_argument("--package-dir", help="use this chalice package output instead of building one")
    parser.add_argument("--no-make-package", action="store_true",
                        help="build the package with `chalice package` even if the Makefile has a package target")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 runs, 10 s long answer, capacity ≤ 25")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the doc and plot from results.json")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    results_path = OUT / "results.json"
    if args.report_only:
        results = json.loads(results_path.read_text())
        return _report(results)
    if args.quick:
        args.runs, args.long_s, args.import_runs, args.chains = 2, 10.0, 3, 1
        args.capacity_max = min(args.capacity_max, 25)
        args.scale_rounds, args.scale_answer_s, args.scale_deltas = 1, 6.0, 180
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = (skip | only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}; phases are {', '.join(PHASES)}")
    if only:
        skip = set(PHASES) - only
    elif "relays" in skip:
        parser.error("the relay comparison is what the doc is about; it cannot be skipped (use --only to run other phases alone)")

    workload = Workload(deltas=args.deltas, delta_ms=args.delta_ms, first_token_ms=args.first_token_ms,
                        post_ms=args.post_ms, flush_ms=args.flush_ms, runs=args.runs, long_s=args.long_s,
                        long_deltas=args.deltas, big_chars=args.big_chars)
    began = time.monotonic()
    run_info: Dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": _command(argv),
        "machine": machine(),
        "workload": asdict(workload),
        "memory_config": memory_config(),
    }
    results: Dict[str, Any] = dict(run_info)
    if only and results_path.exists():  # keep what the other phases measured before
        results = json.loads(results_path.read_text())
        results["memory_config"] = run_info["memory_config"]  # the sizes configured now
    from bench import capacity, coldstart, relays, scale, size, stack

    loads = {"at the start": os.getloadavg()}
    moto = stack.MotoServer().start()
    try:
        if "relays" not in skip:
            say("relays: agentstream, post-once, post-per-delta")
            results["relays"] = relays.compare(moto, workload, OUT, say)
            loads["after the relays"] = os.getloadavg()
        if "size" not in skip:
            say("deployment package")
            results["size"] = size.measure(say, args.package_dir, use_make=not args.no_make_package)
        if "coldstart" not in skip:
            say("cold start and memory")
            package = results.get("size", {}).get("dir")
            results["coldstart"] = coldstart.measure(moto, package, args.import_runs, args.chains, args.big_chars, OUT, say)
            loads["after the package and cold start"] = os.getloadavg()
        if "scale" not in skip:
            say("one worker, many turns: " + args.scale_levels.replace(",", ", ") + " turns per execution")
            levels = tuple(sorted({int(x) for x in args.scale_levels.split(",") if x.strip()}))
            scale_workload = scale.ScaleWorkload(
                levels=levels, answer_s=args.scale_answer_s, deltas=args.scale_deltas, first_token_ms=args.first_token_ms,
                post_ms=args.post_ms, flush_ms=args.flush_ms, rounds=args.scale_rounds, check_runs=1 if args.quick else 2,
                cpu_cap=not args.no_cpu_cap, configured_mb=run_info["memory_config"].get("turn_worker", 512))
            results["scale"] = scale.measure(moto, scale_workload, OUT, say)
            results["scale"].update(command=run_info["command"], machine=run_info["machine"])
            loads["after one worker, many turns"] = os.getloadavg()
    finally:
        moto.stop()
    if "capacity" not in skip:
        results["capacity"] = {}
        # The workload's pace, and `make run`'s own (CHUNK_DELAY_S defaults to 20 ms).
        for name, delta_ms in (("workload", args.delta_ms), ("make run", 20.0)):
            say(f"local stack capacity, {delta_ms:g} ms deltas")
            deltas = max(int(args.capacity_s * 1000 / delta_ms), 10)
            results["capacity"][name] = capacity.measure(
                deltas, delta_ms, args.first_token_ms, args.capacity_post_ms, args.flush_ms, 50.0, args.capacity_max,
                150.0, OUT / f"capacity-{delta_ms:g}ms.log", say)
        loads["after capacity"] = os.getloadavg()
    if not only:  # the setup table describes the whole run
        results["load_average"] = loads
        results["duration_s"] = time.monotonic() - began
    else:  # and says which phases were measured again since, alone, and when
        for phase in sorted(only):
            results.setdefault("reruns", {})[phase] = {
                "started": run_info["started"], "command": run_info["command"],
                "duration_s": time.monotonic() - began, "load_average": loads}
        if "relays" in only:
            results["workload"] = run_info["workload"]
    results_path.write_text(json.dumps(results, indent=1, default=str))
    say(f"results: {results_path.relative_to(ROOT)}")
    return _report(results, None if not only else sorted(only))


# The doc's regions each phase's results are rendered into (besides its own, "targets" gathers verdicts).
REGIONS_OF = {"relays": ("setup", "targets", "stream", "long", "big", "cost"), "size": ("setup", "size", "targets"),
              "coldstart": ("setup", "coldstart", "observability", "memory", "targets", "cost"),
              "capacity": ("setup", "capacity"), "scale": ("setup", "scale", "targets")}


def _report(results: Dict[str, Any], phases: Any = None) -> int:
    """Rewrite the doc (every region, or only the ``phases``' regions) and, with the relays, the plot."""
    from bench import report

    regions = None if phases is None else sorted({r for phase in phases for r in REGIONS_OF[phase]})
    if "relays" in results and (regions is None or "stream" in regions):
        report.plot(results, PLOT)
        say(f"wrote {PLOT.relative_to(ROOT)}")
    results["plot"] = PLOT.name
    report.write_doc(DOC, results, regions)
    say(f"wrote {DOC.relative_to(ROOT)}" + ("" if regions is None else f" (sections: {', '.join(regions)})"))
    failed = [f"{workload}/{relay}" for workload, data in results.get("relays", {}).items() for relay, d in data.items()
              if not d["summary"]["ok"]]
    scale_levels = (results.get("scale") or {}).get("levels", {})
    failed += [f"scale/K={k}" for k, level in scale_levels.items() if not level["ok"]]
    if failed:
        say("some turns did not deliver the answer intact: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
