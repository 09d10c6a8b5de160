"""Shapes of the control plane's answers, as TypedDicts: values are the decoded JSON dicts,
so ``provider["id"]`` works and type checkers know the fields."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "ProviderConfig",
    "OrgConfig",
    "Deleted",
    "GatewayKey",
    "CreatedGatewayKey",
    "LatencyStats",
    "LastError",
    "ProviderHealth",
    "ReloadResult",
]


class ProviderConfig(TypedDict, total=False):
    """The ``config`` object of an org config. The server rejects unknown fields."""

    base_url: str
    model: str
    models: list[str]
    organization: str
    headers: dict[str, str]
    fallbacks: list[str]
    strict: bool
    default_max_tokens: int
    http2: bool
    fetch_images: bool
    connect_timeout: str | int
    first_byte_timeout: str | int
    idle_timeout: str | int


class OrgConfig(TypedDict):
    """A provider config stored by the gateway. The provider key itself never comes back."""

    id: str
    provider: str
    name: str
    config: ProviderConfig
    api_key_set: bool
    api_key_hint: str | None
    enabled: bool
    created_at: int
    updated_at: int


class Deleted(TypedDict):
    id: str
    deleted: bool


class GatewayKey(TypedDict):
    """A gateway client key as listed: only a hint of the key is kept."""

    id: str
    object: Literal["gateway_key"]
    name: str | None
    hint: str
    created_at: int


class CreatedGatewayKey(GatewayKey):
    """The answer to ``keys.create``: the only time the full ``key`` is shown."""

    key: str


class LatencyStats(TypedDict):
    ewma: float | None
    p50: float | None
    p95: float | None


class LastError(TypedDict):
    message: str
    at: int | None


class ProviderHealth(TypedDict):
    """One provider upstream in ``providers.health()``."""

    provider: str
    kind: str
    upstream: str
    state: Literal["healthy", "degraded", "ejected"]
    breaker: Literal["closed", "open", "half_open"]
    error_rate: float
    consecutive_failures: int
    breaker_retry_in_ms: int | None
    latency_ms: NotRequired[LatencyStats]
    ttft_ms: NotRequired[float | None]
    requests: NotRequired[int]
    failures: NotRequired[int]
    rate_limited_until: NotRequired[int | None]
    ratelimit_remaining: NotRequired[dict[str, Any]]
    last_error: NotRequired[LastError | None]
    probe: NotRequired[dict[str, Any]]


class ReloadResult(TypedDict):
    reloaded: bool
    added: list[str]
    removed: list[str]
    changed: list[str]
    routes_changed: bool
