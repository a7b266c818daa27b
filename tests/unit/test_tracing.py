"""The worker's X-Ray subsegments: a turn, and its Bedrock stream read to the end, annotated with ids only."""
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from chalicelib import tracing
from tests.support.worker import run_queued

ROOT = Path(__file__).resolve().parents[2]


class Segment:
    def __init__(self, name):
        self.name, self.annotations, self.thread = name, {}, threading.current_thread().name

    def put_annotation(self, key, value):
        self.annotations[key] = value


class RecordingProvider:
    """What Powertools' X-Ray provider is asked for: ``in_subsegment`` blocks, in order."""

    def __init__(self):
        self.segments, self.open = [], []

    @contextmanager
    def in_subsegment(self, name):
        segment = Segment(name)
        self.segments.append(segment)
        self.open.append(name)
        try:
            yield segment
        finally:
            self.open.remove(name)


class RecordingTracer:
    def __init__(self):
        self.provider = RecordingProvider()


@pytest.fixture
def traced():
    recording = RecordingTracer()
    tracing.use(recording)
    yield recording.provider
    tracing.use(None)


def test_a_turn_and_its_bedrock_stream_are_subsegments_annotated_with_ids(conn, client, settings, traced):
    conn()(prompt="hi")
    assert run_queued(client, settings) == {"batchItemFailures": []}
    assert [s.name for s in traced.segments] == ["## turn", "## bedrock stream"]
    turn, stream = traced.segments
    assert set(turn.annotations) == {"turn_id"} and len(turn.annotations["turn_id"]) == 32
    assert stream.annotations == {"backend": "agent"} and stream.thread == turn.thread
    assert traced.open == []  # every subsegment closed, the stream's before the turn's


def test_outside_lambda_the_default_tracer_is_disabled_and_the_blocks_still_run(conn, client, settings, monkeypatch):
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    assert tracing.tracer() is None  # no X-Ray SDK, no sampler client built for nothing
    with tracing.subsegment("## anything", turn_id="t"):
        pass  # no X-Ray daemon, no segment: nothing raised
    conn()(prompt="hi")
    assert run_queued(client, settings) == {"batchItemFailures": []}


def test_in_lambda_the_tracer_patches_botocore_so_every_post_and_bedrock_call_is_a_subsegment():
    """In a process of its own: patching botocore is global and lasts for the process."""
    script = (
        "from chalicelib import tracing\n"
        "from aws_xray_sdk.core import patcher\n"
        "tracer = tracing.tracer()\n"
        "assert type(tracer).__name__ == 'Tracer', tracer\n"
        "assert 'botocore' in patcher._PATCHED_MODULES, patcher._PATCHED_MODULES\n"
        "assert tracing.tracer() is tracer\n"
    )
    env = {**os.environ, "LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "agentstream-dev-turn_worker",
           "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
