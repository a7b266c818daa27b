"""chalicelib/aws.py: reading SSM parameters, once per container and age."""
from __future__ import annotations

from typing import List

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from chalicelib.aws import AwsClients, CachedParameter
from chalicelib.settings import Settings

NAME = "/agentstream/dev/system-prompt"


def _denied() -> ClientError:
    return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParameter")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """A read that answers each value of ``script`` in turn (an exception is raised)."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)


def test_parameter_reads_a_string_and_a_secure_string_through_the_apps_client():
    with mock_aws():
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=NAME, Value="Réponds en français. 🙂", Type="String", Tier="Intelligent-Tiering")
        ssm.put_parameter(Name="/agentstream/dev/jwt-secret", Value="s3cr3t", Type="SecureString")
        clients = AwsClients(Settings())
        assert clients.parameter(NAME) == "Réponds en français. 🙂"
        assert clients.parameter("/agentstream/dev/jwt-secret") == "s3cr3t"


def test_a_cached_parameter_is_read_once_until_it_is_older_than_its_max_age():
    clock, read = Clock(), Reads("first", "second")
    parameter = CachedParameter(read, max_age_s=300, clock=clock)
    assert [parameter.get(), parameter.get()] == ["first", "first"] and read.count == 1
    clock.now += 299
    assert parameter.get() == "first" and read.count == 1
    clock.now += 1
    assert parameter.get() == "second" and read.count == 2


def test_without_a_max_age_it_is_read_once_for_the_containers_life():
    clock, read = Clock(), Reads("only")
    parameter = CachedParameter(read, clock=clock)
    parameter.get()
    clock.now += 10**9
    assert parameter.get() == "only" and read.count == 1


def test_a_read_that_fails_before_any_succeeded_raises_and_is_tried_again_next_time():
    read = Reads(_denied(), EndpointConnectionError(endpoint_url="https://ssm"), "prompt")
    parameter = CachedParameter(read, max_age_s=300, clock=Clock())
    with pytest.raises(ClientError):
        parameter.get()
    with pytest.raises(EndpointConnectionError):
        parameter.get()
    assert parameter.get() == "prompt" and read.count == 3


def test_a_failed_refresh_keeps_the_value_read_before_and_waits_another_max_age():
    clock, read = Clock(), Reads("prompt", _denied(), "new prompt")
    parameter = CachedParameter(read, max_age_s=300, clock=clock)
    parameter.get()
    clock.now += 300
    assert parameter.get() == "prompt" and read.count == 2  # SSM failed: the turn still gets the prompt
    clock.now += 299
    assert parameter.get() == "prompt" and read.count == 2  # not a read per turn while SSM fails
    clock.now += 1
    assert parameter.get() == "new prompt" and read.count == 3


def test_a_bug_in_the_read_is_not_taken_for_an_ssm_fault():
    parameter = CachedParameter(Reads("prompt", KeyError("Parameter")), max_age_s=1, clock=(clock := Clock()))
    parameter.get()
    clock.now += 1
    with pytest.raises(KeyError):
        parameter.get()


def test_concurrent_first_uses_read_once():
    import threading

    gate = threading.Event()
    read_count: List[int] = []

    def read() -> str:
        read_count.append(1)
        gate.wait(5)
        return "prompt"

    parameter = CachedParameter(read)
    results: List[str] = []
    threads = [threading.Thread(target=lambda: results.append(parameter.get())) for _ in range(4)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == ["prompt"] * 4 and read_count == [1]
