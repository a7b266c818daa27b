"""``python -m bench.capstack``: the local stack, as ``make run`` starts it, with a recording agent.

``devserver.stack.LocalStack`` is started unchanged, configured through its own environment
variables (``PORT``, ``FIRST_TOKEN_DELAY_S``, ``CHUNK_DELAY_S``, ``POST_LATENCY_S``,
``WORKER_CONCURRENCY``, ...); the only difference is that its Bedrock emulator is
``bench.agent.RecordingBedrock``, so the bench knows when the agent sent each delta.

Talks on its own copy of stdout (the app's log lines go to stderr): ``READY {json}`` once up; then,
for each ``DUMP <path>`` line on stdin, writes the recordings so far to ``<path>`` (and forgets
them) and answers ``DUMPED``. Stops at end of input.
"""
from __future__ import annotations

import json
import os
import sys


def main() -> int:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import devserver.bedrock

    from bench.agent import RecordingBedrock

    devserver.bedrock.BedrockEmulator = RecordingBedrock  # type: ignore[misc]
    from devserver.stack import LocalStack, StackConfig

    stack = LocalStack(StackConfig.from_env())
    try:
        stack.start()
        answers.write("READY " + json.dumps(stack.describe()) + "\n")
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "DUMP":
                streams = stack.bedrock.take_all()
                with open(argument, "w") as f:
                    json.dump({key: stream.to_json() for key, stream in streams.items()}, f)
                answers.write("DUMPED\n")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
