"""Fixtures for the local-stack tests: one stack, as `make run` starts it, for the whole session."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.stack import FAST, Stack, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    started = start_stack()
    yield started
    stop_stack(started)


# Two worker executions allowed, batches of up to ten (tests/integration/test_scale.py). The
# visibility timeout stays long, so only the worker's shortened one can bring a failed record back soon.
SCALED = {"WORKER_CONCURRENCY": "2", "TURN_WORKER_BATCH_SIZE": "10", "VISIBILITY_TIMEOUT_S": "120"}


@pytest.fixture(scope="module")
def scaled() -> Iterator[Stack]:
    started = start_stack(**SCALED)
    yield started
    stop_stack(started)


# One execution at a time that streams two turns and takes none from the queue: a batch of five
# then holds two claimed turns and three waiting for a slot. Heartbeats and redelivery are fast.
NARROW = {**FAST, "WORKER_CONCURRENCY": "1", "TURN_WORKER_BATCH_SIZE": "10", "WORKER_MAX_TURNS": "2",
          "WORKER_REFILL_RESERVE_S": "86400"}


@pytest.fixture(scope="module")
def narrow() -> Iterator[Stack]:
    started = start_stack(**NARROW)
    yield started
    stop_stack(started)
