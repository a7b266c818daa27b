"""``python -m bench.probe HANDLER EVENTS.json``: one fresh Lambda container, measured.

Imports the deployed module path (``app``, where Chalice puts every handler), then invokes
``HANDLER`` once per event, in order, with Lambda-like contexts; the first invocation creates the
boto3 clients it needs, as a cold container's does. Prints one JSON line: the import time, each
invocation's time (wall and CPU) and result, and the peak resident memory (``ru_maxrss``) after the import and
after every invocation (``VmHWM``), and which of the observability modules (``WATCHED``) the container had
loaded by then. The app's own log lines go to stderr.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

# The worker's observability code and what it brings (the WebSocket handlers should load none of the
# X-Ray SDK and the turn report's consumers; Powertools' metrics and tracing modules come with its Logger).
WATCHED = ("aws_lambda_powertools.metrics", "aws_lambda_powertools.tracing", "aws_xray_sdk", "aws_xray_sdk.core",
           "aws_xray_sdk.ext.botocore.patch", "wrapt", "chalicelib.turns.metrics", "chalicelib.turns.eventbus",
           "chalicelib.turns.metering")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since it started (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries the forking parent's peak across ``exec`` into
    it, so a probe started by a 70 MB bench would report at least 70 MB whatever it does.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def main() -> int:
    handler, events_path = sys.argv[1], sys.argv[2]
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    with open(events_path) as f:
        events = json.load(f)
    baseline_rss = _peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    import app as app_module

    imported, import_cpu = time.perf_counter() - started, time.process_time() - cpu
    after_import_rss = _peak_rss_mb()
    from bench.events import context

    function = app_module.app.handler_map[handler]
    calls = []
    for event in events:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = function(event, context(handler))
            error = None
        except Exception as exc:  # noqa: BLE001 - report it
            result, error = None, f"{type(exc).__name__}: {exc}"
        calls.append({"s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "result": result,
                      "error": error, "peak_rss_mb": _peak_rss_mb()})
    answers.write(json.dumps({
        "handler": handler,
        "interpreter_rss_mb": baseline_rss,
        "import_s": imported,
        "import_cpu_s": import_cpu,
        "after_import_rss_mb": after_import_rss,
        "calls": calls,
        "peak_rss_mb": _peak_rss_mb(),
        "modules": len(sys.modules),
        "loaded": [name for name in WATCHED if name in sys.modules],
    }, default=str) + "\n")
    answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
