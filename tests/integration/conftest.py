"""Fixtures for the local-stack tests: one stack, as `make run` starts it, for the whole session."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.stack import Stack, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    started = start_stack()
    yield started
    stop_stack(started)
