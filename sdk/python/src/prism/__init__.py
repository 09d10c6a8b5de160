"""Python client for the Prism LLM gateway.

>>> from prism import Prism
>>> client = Prism(api_key="sk-prism-...", base_url="http://localhost:8080",
...                control_plane_url="http://localhost:8081", admin_key="...")
>>> provider = client.org_configs.create(provider="openai", api_key="sk-...")
>>> client.chat.completions.create(model="openai/gpt-4o-mini", messages=[...])
"""

from ._client import DEFAULT_BASE_URL, DEFAULT_CONTROL_PLANE_URL, Prism
from ._control import NOT_GIVEN
from ._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PrismError,
    RateLimitError,
)
from ._resources import Keys, OrgConfigs, Providers
from ._types import (
    CreatedGatewayKey,
    Deleted,
    GatewayKey,
    OrgConfig,
    ProviderConfig,
    ProviderHealth,
    ReloadResult,
)

__version__ = "0.1.0"

__all__ = [
    "Prism",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONTROL_PLANE_URL",
    "NOT_GIVEN",
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
    "OrgConfigs",
    "Keys",
    "Providers",
    "OrgConfig",
    "ProviderConfig",
    "Deleted",
    "GatewayKey",
    "CreatedGatewayKey",
    "ProviderHealth",
    "ReloadResult",
]
