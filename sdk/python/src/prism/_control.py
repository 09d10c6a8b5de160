"""The control-plane transport: one ``httpx.Client``, the admin bearer key, JSON in and out,
and error answers turned into typed exceptions."""

from __future__ import annotations

from typing import Any

import httpx

from ._errors import APIConnectionError, PrismError, error_for_status

# A sentinel for "leave this field out of the request", so that ``None`` can mean JSON null.
class _NotGiven:
    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def without_not_given(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if not isinstance(v, _NotGiven)}


class ControlPlane:
    """Sends authenticated JSON requests to the control plane."""

    def __init__(
        self,
        base_url: str,
        admin_key: str | None,
        *,
        timeout: float,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._admin_key = admin_key
        self._owns_client = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        if not self._admin_key:
            raise PrismError(
                "No admin key for the control plane: pass admin_key=... to Prism() or set PRISM_ADMIN_KEY."
            )
        headers = {"Authorization": f"Bearer {self._admin_key}", "Accept": "application/json"}
        url = f"{self.base_url}{path}"
        try:
            if body is None:
                resp = self._http.request(method, url, headers=headers)
            else:
                resp = self._http.request(method, url, headers=headers, json=body)
        except httpx.TimeoutException as e:
            raise APIConnectionError(f"Control plane at {self.base_url} timed out: {e}") from e
        except httpx.TransportError as e:
            raise APIConnectionError(f"Cannot reach the control plane at {self.base_url}: {e}") from e
        try:
            data: Any = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            raise error_for_status(resp.status_code, data, resp.text)
        if data is None and resp.content:
            raise PrismError(
                f"The control plane answered {resp.status_code} with a body that is not JSON",
                status=resp.status_code,
                body=resp.text,
            )
        return data

    def close(self) -> None:
        if self._owns_client:
            self._http.close()
