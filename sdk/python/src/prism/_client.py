"""``Prism``: the official ``openai`` client for the data plane, typed resources for the
control plane."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import httpx
from openai import DEFAULT_MAX_RETRIES, OpenAI

from ._control import ControlPlane
from ._errors import PrismError
from ._resources import Keys, OrgConfigs, Providers
from ._types import ReloadResult

if TYPE_CHECKING:
    from openai.resources.chat import Chat
    from openai.resources.completions import Completions
    from openai.resources.embeddings import Embeddings
    from openai.resources.models import Models

__all__ = ["Prism", "DEFAULT_BASE_URL", "DEFAULT_CONTROL_PLANE_URL"]

DEFAULT_BASE_URL = "http://localhost:8080"
DEFAULT_CONTROL_PLANE_URL = "http://localhost:8081"
DEFAULT_TIMEOUT = 60.0


def _data_plane_url(base_url: str) -> str:
    """The OpenAI API root: ``<base_url>/v1`` (a base URL already ending in /v1 is kept)."""
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class Prism:
    """A client for one Prism gateway.

    Data plane (``chat``, ``completions``, ``embeddings``, ``models``, or ``openai`` for
    the whole official client): ``OpenAI`` pointed at ``<base_url>/v1`` with the
    gateway key, so streaming, retries and response types are the official SDK's.

    Control plane (``org_configs``, ``keys``, ``providers``, ``reload()``): the admin API at
    ``control_plane_url`` with the admin key; failures raise :class:`prism.PrismError`
    subclasses.

    Arguments left out are read from the environment: ``PRISM_API_KEY``,
    ``PRISM_BASE_URL``, ``PRISM_CONTROL_PLANE_URL``, ``PRISM_ADMIN_KEY``.
    """

    org_configs: OrgConfigs
    keys: Keys
    providers: Providers

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        control_plane_url: str | None = None,
        admin_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: dict[str, str] | None = None,
        control_http_client: httpx.Client | None = None,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("PRISM_API_KEY")
        self.base_url = base_url or os.environ.get("PRISM_BASE_URL") or DEFAULT_BASE_URL
        self.control_plane_url = (
            control_plane_url or os.environ.get("PRISM_CONTROL_PLANE_URL") or DEFAULT_CONTROL_PLANE_URL
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._default_headers = default_headers
        self._openai: OpenAI | None = None
        self._control = ControlPlane(
            self.control_plane_url,
            admin_key if admin_key is not None else os.environ.get("PRISM_ADMIN_KEY"),
            timeout=timeout,
            http_client=control_http_client,
        )
        self.org_configs = OrgConfigs(self._control)
        self.keys = Keys(self._control)
        self.providers = Providers(self._control)

    # -- data plane ---------------------------------------------------------------------

    @property
    def openai(self) -> OpenAI:
        """The official OpenAI client, configured for this gateway (created on first use)."""
        if self._openai is None:
            if not self.api_key:
                raise PrismError(
                    "No gateway key for the data plane: pass api_key=... to Prism() or set PRISM_API_KEY."
                )
            self._openai = OpenAI(
                api_key=self.api_key,
                base_url=_data_plane_url(self.base_url),
                timeout=self._timeout,
                max_retries=self._max_retries,
                default_headers=self._default_headers,
            )
        return self._openai

    @property
    def chat(self) -> Chat:
        return self.openai.chat

    @property
    def completions(self) -> Completions:
        return self.openai.completions

    @property
    def embeddings(self) -> Embeddings:
        return self.openai.embeddings

    @property
    def models(self) -> Models:
        return self.openai.models

    # -- control plane ------------------------------------------------------------------

    def reload(self) -> ReloadResult:
        """Re-read the gateway's config file. A rejected file raises
        :class:`prism.BadRequestError` (its ``body["errors"]`` lists every error) and the
        running config stays."""
        result: ReloadResult = self._control.request("POST", "/v1/reload")
        return result

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections of both planes."""
        self._control.close()
        if self._openai is not None:
            self._openai.close()

    def __enter__(self) -> Prism:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Prism(base_url={self.base_url!r}, control_plane_url={self.control_plane_url!r})"
