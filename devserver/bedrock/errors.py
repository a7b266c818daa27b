"""The errors Bedrock answers before a stream starts, shared by the three emulated APIs."""

from __future__ import annotations

__all__ = ["ServiceError", "validation"]


class ServiceError(Exception):
    """An HTTP error answered before any stream starts (restJson style).

    ``code`` goes to the ``x-amzn-ErrorType`` header, from which botocore picks the modelled
    exception (``ValidationException``, ``ThrottlingException``, ...).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def validation(message: str) -> ServiceError:
    """A 400 ``ValidationException``, what every Bedrock API answers a malformed request."""
    return ServiceError(400, "ValidationException", message)
