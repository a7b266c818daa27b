"""One local stack for the client tests, tuned so that failures surface within seconds."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.integration.conftest import Stack, start_stack, stop_stack

# A short visibility timeout, watcher interval and checkpoint interval (the heartbeat): a killed
# worker's turn is interrupted in seconds, and a resumed turn is re-attached within 0.1 s.
FAST = {"VISIBILITY_TIMEOUT_S": "3", "CONTROL_INTERVAL_MS": "100", "CHECKPOINT_INTERVAL_MS": "300"}


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    stack = start_stack(**FAST)
    yield stack
    stop_stack(stack)
