"""Typed exceptions for control-plane failures.

Every error the control plane answers has the OpenAI envelope
``{"error": {"message", "type", "param", "code"}}``; the exception raised carries those
fields and the HTTP status. Data-plane calls raise the official ``openai`` exceptions.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PrismError",
    "APIConnectionError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "InternalServerError",
    "error_for_status",
]


class PrismError(Exception):
    """Base class of every error raised by the Prism control-plane client."""

    status: int | None
    message: str
    type: str | None
    param: str | None
    code: str | None
    body: Any

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.body = body

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        detail = ", ".join(f"{k}={v}" for k, v in (("param", self.param), ("code", self.code)) if v)
        return f"{prefix}{self.message}" + (f" ({detail})" if detail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, type={self.type!r}, param={self.param!r}, code={self.code!r})"


class APIConnectionError(PrismError):
    """The control plane could not be reached (refused, DNS, timeout)."""


class APIStatusError(PrismError):
    """The control plane answered with an error status not covered by a narrower class."""

    status: int


class BadRequestError(APIStatusError):
    """400, 413 or 422: the request was refused as invalid; nothing changed."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong admin key."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: no record with that id (or an unknown path)."""


class ConflictError(APIStatusError):
    """409: a name already taken, or a change that conflicts with the running config."""


class RateLimitError(APIStatusError):
    """429."""


class InternalServerError(APIStatusError):
    """5xx."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for_status(status: int, body: Any, fallback_text: str = "") -> APIStatusError:
    """Build the exception for an error answer, from its decoded JSON body (or raw text)."""
    err = body.get("error") if isinstance(body, dict) else None
    fields: dict[str, Any] = err if isinstance(err, dict) else {}
    message = fields.get("message")
    if not isinstance(message, str) or not message:
        if isinstance(err, str) and err:
            message = err
        else:
            message = fallback_text.strip() or f"HTTP {status}"

    def text(key: str) -> str | None:
        v = fields.get(key)
        return v if isinstance(v, str) else None

    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(
        message,
        status=status,
        type=text("type"),
        param=text("param"),
        code=text("code"),
        body=body,
    )
