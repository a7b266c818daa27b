"""One local stack for the client tests, tuned so that failures surface within seconds."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.stack import FAST, Stack, start_stack, stop_stack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    stack = start_stack(**FAST)
    yield stack
    stop_stack(stack)
