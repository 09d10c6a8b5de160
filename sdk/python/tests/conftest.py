from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway import ADMIN_KEY, GATEWAY_KEY, Gateway, Mock
from prism import Prism


@dataclass
class Stack:
    gateway: Gateway
    mock: Mock
    mock2: Mock


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    mock, mock2 = Mock(), Mock()
    try:
        gw = Gateway()
    except Exception:
        mock.close()
        mock2.close()
        raise
    try:
        yield Stack(gw, mock, mock2)
    finally:
        gw.close()
        mock.close()
        mock2.close()


@pytest.fixture()
def client(stack: Stack) -> Iterator[Prism]:
    with Prism(
        api_key=GATEWAY_KEY,
        base_url=stack.gateway.base_url,
        control_plane_url=stack.gateway.control_plane_url,
        admin_key=ADMIN_KEY,
        max_retries=0,
    ) as c:
        yield c


@pytest.fixture()
def name() -> str:
    """A provider name no other test uses."""
    return f"mock-openai-{uuid.uuid4().hex[:8]}"
