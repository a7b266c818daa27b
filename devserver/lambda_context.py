"""A stand-in for the context object AWS Lambda passes to a Python handler.

The local stack calls the app's handlers in-process; code that reads the context
(aws-lambda-powertools' Logger reads function_name, memory_limit_in_mb,
invoked_function_arn and aws_request_id; the turn worker reads
get_remaining_time_in_millis) must find the same attributes it finds on AWS.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

#: The account id the local stack reports (moto's default account).
LOCAL_ACCOUNT_ID = "123456789012"


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers use.

    ``deadline`` is a wall-clock time (``time.time()`` seconds), as the Lambda
    runtime's own deadline is.
    """

    function_name: str
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline: float = field(default_factory=lambda: time.time() + 60.0)
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = function_arn(self.function_name)
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    @classmethod
    def for_invocation(
        cls,
        function_name: str,
        timeout: float = 60.0,
        *,
        memory_limit_in_mb: int = 128,
        region: str = "us-east-1",
    ) -> LambdaContext:
        """A fresh context for one invocation of a function with ``timeout`` seconds."""
        return cls(
            function_name=function_name,
            memory_limit_in_mb=memory_limit_in_mb,
            invoked_function_arn=function_arn(function_name, region),
            deadline=time.time() + timeout,
        )

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop this invocation (never negative)."""
        return max(0, int((self.deadline - time.time()) * 1000))


def function_arn(function_name: str, region: str = "us-east-1") -> str:
    """The ARN a function of that name would have in the local account."""
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{function_name}"
