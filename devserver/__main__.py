"""``python -m devserver``: start the local stack and serve until Ctrl-C (what `make run` does)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from devserver.stack import LocalStack, StackConfig


def main() -> int:
    parser = argparse.ArgumentParser(description="Run agentstream locally, offline, on 127.0.0.1.")
    parser.add_argument("--port", type=int, help="WebSocket port (default $PORT or 8000; 0 picks a free one)")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("DEVSERVER_LOG_LEVEL", "INFO"), format="%(name)s: %(message)s")
    for noisy in ("werkzeug", "botocore", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = StackConfig.from_env()
    if args.port is not None:
        config.port = args.port
    stack = LocalStack(config)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stack.start()
        print(stack.banner(), flush=True)
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("agentstream local stack stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
