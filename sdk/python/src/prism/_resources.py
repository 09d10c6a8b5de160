"""Control-plane resources: ``org_configs``, ``keys`` and ``providers``."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

from ._control import NOT_GIVEN, ControlPlane, without_not_given
from ._types import CreatedGatewayKey, Deleted, GatewayKey, OrgConfig, ProviderConfig, ProviderHealth

__all__ = ["OrgConfigs", "Keys", "Providers"]


def _item(collection: str, id: str) -> str:
    if not isinstance(id, str) or not id:
        raise ValueError(f"expected a non-empty {collection} id, got {id!r}")
    return f"/v1/{collection}/{quote(id, safe='')}"


def _data(answer: Any) -> list[Any]:
    return list(answer.get("data", [])) if isinstance(answer, dict) else []


class OrgConfigs:
    """Provider configs ("org configs") managed at runtime: ``/v1/org_configs``.

    A change takes effect for the next request through the gateway, without a restart.
    """

    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    def create(
        self,
        *,
        provider: str,
        name: str | None = None,
        api_key: str | None = None,
        config: ProviderConfig | Mapping[str, Any] | None = None,
        enabled: bool | None = None,
    ) -> OrgConfig:
        """Add a provider. ``provider`` is the kind (``openai``, ``anthropic``, ``gemini``,
        ``ollama``, ...); ``name`` (default: the kind) is the ``name/`` prefix of model names
        routed to it. ``api_key`` is stored encrypted and never returned."""
        body: dict[str, Any] = {"provider": provider}
        if name is not None:
            body["name"] = name
        if api_key is not None:
            body["api_key"] = api_key
        if config is not None:
            body["config"] = dict(config)
        if enabled is not None:
            body["enabled"] = enabled
        return cast(OrgConfig, self._control.request("POST", "/v1/org_configs", body))

    def list(self) -> builtins.list[OrgConfig]:
        """Every stored org config, oldest first."""
        return _data(self._control.request("GET", "/v1/org_configs"))

    def get(self, id: str) -> OrgConfig:
        return cast(OrgConfig, self._control.request("GET", _item("org_configs", id)))

    def update(
        self,
        id: str,
        *,
        name: str = NOT_GIVEN,
        api_key: str | None = NOT_GIVEN,
        config: ProviderConfig | Mapping[str, Any] | None = NOT_GIVEN,
        enabled: bool = NOT_GIVEN,
    ) -> OrgConfig:
        """Change an org config; fields left out stay as they are.

        ``config`` is merged field by field into the stored one (a field set to ``None``
        is reset); ``config=None`` resets them all. ``api_key=None`` removes the key."""
        body = without_not_given(
            {
                "name": name,
                "api_key": api_key,
                "config": dict(config) if isinstance(config, Mapping) else config,
                "enabled": enabled,
            }
        )
        return cast(OrgConfig, self._control.request("PATCH", _item("org_configs", id), body))

    def delete(self, id: str) -> Deleted:
        return cast(Deleted, self._control.request("DELETE", _item("org_configs", id)))


class Keys:
    """Gateway client keys (the bearer keys of the data plane): ``/v1/keys``."""

    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    def create(self, *, name: str | None = None) -> CreatedGatewayKey:
        """Create a key. The answer's ``key`` is shown this once; keep it."""
        body: dict[str, Any] = {} if name is None else {"name": name}
        return cast(CreatedGatewayKey, self._control.request("POST", "/v1/keys", body))

    def list(self) -> builtins.list[GatewayKey]:
        return _data(self._control.request("GET", "/v1/keys"))

    def delete(self, id: str) -> Deleted:
        """Revoke a key: refused by the gateway from the next request on."""
        return cast(Deleted, self._control.request("DELETE", _item("keys", id)))


class Providers:
    """Provider health: ``/v1/providers/health``."""

    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    def health(self) -> builtins.list[ProviderHealth]:
        """State, breaker, latency, error rate and last error of every provider upstream."""
        return _data(self._control.request("GET", "/v1/providers/health"))
