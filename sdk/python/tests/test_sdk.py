"""The Python SDK against a real gateway (debug build) and the mock upstream."""

from __future__ import annotations

import uuid

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

import prism
from conftest import Stack
from gateway import ADMIN_KEY, GATEWAY_KEY, free_port
from prism import Prism

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]


def chat_text(client: Prism, model: str) -> str:
    resp = client.chat.completions.create(model=model, messages=HELLO)
    return resp.choices[0].message.content or ""


def stream_text(client: Prism, model: str) -> tuple[str, int]:
    stream = client.chat.completions.create(model=model, messages=HELLO, stream=True)
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    return "".join(parts), len(parts)


def test_data_plane_is_the_official_openai_client(client: Prism, stack: Stack) -> None:
    assert isinstance(client.openai, openai.OpenAI)
    assert str(client.openai.base_url).rstrip("/") == f"{stack.gateway.base_url}/v1"
    assert client.openai.api_key == GATEWAY_KEY
    assert client.chat is client.openai.chat
    # A base URL that already names /v1 is not doubled.
    other = Prism(api_key="k", base_url=f"{stack.gateway.base_url}/v1/", admin_key="a")
    assert str(other.openai.base_url).rstrip("/") == f"{stack.gateway.base_url}/v1"


def test_create_provider_then_chat_and_stream(client: Prism, stack: Stack, name: str) -> None:
    provider = client.org_configs.create(
        provider="openai", name=name, api_key="sk-test-123", config={"base_url": stack.mock.v1}
    )
    assert provider["id"].startswith("oc_")
    assert provider["provider"] == "openai" and provider["name"] == name
    assert provider["config"] == {"base_url": stack.mock.v1}
    assert provider["api_key_set"] is True and provider["enabled"] is True
    assert "sk-test-123" not in str(provider), "the provider key must never come back"

    before = stack.mock.requests()
    resp = client.chat.completions.create(model=f"{name}/some-model", messages=HELLO)
    assert isinstance(resp, ChatCompletion)
    assert "prism-mock received" in (resp.choices[0].message.content or "")

    text, chunks = stream_text(client, f"{name}/some-model")
    assert "prism-mock received" in text and chunks > 1
    assert stack.mock.requests() == before + 2

    assert client.org_configs.delete(provider["id"]) == {"id": provider["id"], "deleted": True}


def test_list_get_and_update(client: Prism, stack: Stack, name: str) -> None:
    provider = client.org_configs.create(provider="openai", name=name, config={"base_url": stack.mock.v1})
    assert provider["api_key_set"] is False and provider["api_key_hint"] is None
    try:
        listed = client.org_configs.list()
        assert provider["id"] in [p["id"] for p in listed]
        assert client.org_configs.get(provider["id"]) == provider

        # Point it at the second mock: the next request goes there, no restart.
        updated = client.org_configs.update(
            provider["id"], config={"base_url": stack.mock2.v1, "organization": "my-org"}, api_key="sk-new-4567"
        )
        assert updated["config"] == {"base_url": stack.mock2.v1, "organization": "my-org"}
        assert updated["api_key_set"] is True and updated["api_key_hint"]
        first, second = stack.mock.requests(), stack.mock2.requests()
        assert "prism-mock received" in chat_text(client, f"{name}/m")
        assert (stack.mock.requests(), stack.mock2.requests()) == (first, second + 1)

        # A null field resets it; api_key=None removes the key; fields left out stay.
        updated = client.org_configs.update(provider["id"], config={"organization": None}, api_key=None)
        assert updated["config"] == {"base_url": stack.mock2.v1}
        assert updated["api_key_set"] is False and updated["name"] == name

        # Renaming moves the route.
        renamed = f"{name}-renamed"
        updated = client.org_configs.update(provider["id"], name=renamed, enabled=True)
        assert updated["name"] == renamed
        assert "prism-mock received" in chat_text(client, f"{renamed}/m")
        with pytest.raises(openai.NotFoundError):
            chat_text(client, f"{name}/m")
    finally:
        client.org_configs.delete(provider["id"])


def test_anthropic_provider_through_the_openai_format(client: Prism, stack: Stack) -> None:
    name = f"claude-{uuid.uuid4().hex[:8]}"
    provider = client.org_configs.create(
        provider="anthropic", name=name, api_key="sk-ant-test", config={"base_url": stack.mock.root}
    )
    try:
        assert provider["provider"] == "anthropic"
        before = stack.mock.stats()["by_path"].get("/v1/messages", 0)
        assert "prism-mock received" in chat_text(client, f"{name}/claude-haiku-4-5")
        text, _ = stream_text(client, f"{name}/claude-haiku-4-5")
        assert "prism-mock received" in text
        assert stack.mock.stats()["by_path"].get("/v1/messages", 0) == before + 2
    finally:
        client.org_configs.delete(provider["id"])


def test_deleted_provider_is_no_longer_routed(client: Prism, stack: Stack, name: str) -> None:
    provider = client.org_configs.create(provider="openai", name=name, config={"base_url": stack.mock.v1})
    assert "prism-mock received" in chat_text(client, f"{name}/m")
    assert client.org_configs.delete(provider["id"])["deleted"] is True
    assert provider["id"] not in [p["id"] for p in client.org_configs.list()]
    with pytest.raises(prism.NotFoundError):
        client.org_configs.get(provider["id"])
    with pytest.raises(openai.NotFoundError) as e:
        chat_text(client, f"{name}/m")
    assert e.value.status_code == 404


def test_gateway_keys_create_list_use_revoke(client: Prism, stack: Stack, name: str) -> None:
    provider = client.org_configs.create(provider="openai", name=name, config={"base_url": stack.mock.v1})
    try:
        created = client.keys.create(name="sdk-test")
        key = created["key"]
        assert key.startswith("sk-prism-") and created["id"].startswith("key_")
        assert created["name"] == "sdk-test" and created["object"] == "gateway_key"
        listed = {k["id"]: k for k in client.keys.list()}
        assert created["id"] in listed
        assert "key" not in listed[created["id"]], "a listed key shows only its hint"
        assert listed[created["id"]]["hint"] == created["hint"]

        with Prism(api_key=key, base_url=stack.gateway.base_url, max_retries=0) as user:
            assert "prism-mock received" in chat_text(user, f"{name}/m")
            assert client.keys.delete(created["id"]) == {"id": created["id"], "deleted": True}
            with pytest.raises(openai.AuthenticationError) as e:
                chat_text(user, f"{name}/m")
            assert e.value.status_code == 401
        assert created["id"] not in [k["id"] for k in client.keys.list()]
        with pytest.raises(prism.NotFoundError):
            client.keys.delete(created["id"])
        # A key without a name.
        anon = client.keys.create()
        assert anon["name"] is None
        client.keys.delete(anon["id"])
    finally:
        client.org_configs.delete(provider["id"])


def test_provider_health(client: Prism, stack: Stack, name: str) -> None:
    provider = client.org_configs.create(provider="openai", name=name, config={"base_url": stack.mock.v1})
    try:
        chat_text(client, f"{name}/m")
        entries = [h for h in client.providers.health() if h["provider"] == name]
        assert len(entries) == 1
        h = entries[0]
        assert h["kind"] == "openai" and h["upstream"] == stack.mock.v1
        assert h["state"] == "healthy" and h["breaker"] == "closed"
        assert h.get("requests", 0) >= 1
    finally:
        client.org_configs.delete(provider["id"])


def test_reload(client: Prism) -> None:
    result = client.reload()
    assert result["reloaded"] is True
    assert result["added"] == [] and result["removed"] == []


def test_errors_are_typed_and_carry_the_server_message(client: Prism, stack: Stack, name: str) -> None:
    with pytest.raises(prism.NotFoundError) as nf:
        client.org_configs.get("oc_does_not_exist")
    assert nf.value.status == 404 and nf.value.type == "not_found_error" and nf.value.param == "id"
    assert "oc_does_not_exist" in nf.value.message
    with pytest.raises(prism.NotFoundError):
        client.org_configs.update("oc_does_not_exist", enabled=False)
    with pytest.raises(prism.NotFoundError):
        client.org_configs.delete("oc_does_not_exist")

    provider = client.org_configs.create(provider="openai", name=name, config={"base_url": stack.mock.v1})
    try:
        with pytest.raises(prism.ConflictError) as conflict:
            client.org_configs.create(provider="openai", name=name, config={"base_url": stack.mock.v1})
        assert conflict.value.status == 409 and conflict.value.param == "name"
        assert conflict.value.code == "conflict" and provider["id"] in conflict.value.message

        with pytest.raises(prism.BadRequestError) as bad:
            client.org_configs.update(provider["id"], config={"base_url": "ftp://nowhere"})
        assert bad.value.status == 400 and bad.value.param == "config.base_url"
        assert "http or https" in bad.value.message
        assert client.org_configs.get(provider["id"])["config"] == {"base_url": stack.mock.v1}, "nothing changed"
    finally:
        client.org_configs.delete(provider["id"])

    with pytest.raises(prism.BadRequestError) as kind:
        client.org_configs.create(provider="not-a-kind", name=name)
    assert kind.value.param == "provider" and "Unknown provider kind" in kind.value.message
    with pytest.raises(prism.BadRequestError) as field:
        client.org_configs.create(provider="openai", name=name, config={"no_such_field": 1})
    assert field.value.param == "config.no_such_field"

    # Every error class derives from PrismError; status errors from APIStatusError.
    assert isinstance(nf.value, prism.APIStatusError) and isinstance(nf.value, prism.PrismError)


def test_wrong_missing_admin_key_and_unreachable_control_plane(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    cp = stack.gateway.control_plane_url
    with Prism(api_key=GATEWAY_KEY, control_plane_url=cp, admin_key="wrong-admin-key") as wrong:
        with pytest.raises(prism.AuthenticationError) as e:
            wrong.org_configs.list()
    assert e.value.status == 401 and e.value.type == "authentication_error"
    assert "admin key" in e.value.message

    monkeypatch.delenv("PRISM_ADMIN_KEY", raising=False)
    with Prism(api_key=GATEWAY_KEY, control_plane_url=cp) as missing:
        with pytest.raises(prism.PrismError, match="PRISM_ADMIN_KEY"):
            missing.keys.list()

    # Read from the environment when not passed.
    monkeypatch.setenv("PRISM_ADMIN_KEY", ADMIN_KEY)
    with Prism(api_key=GATEWAY_KEY, control_plane_url=cp) as from_env:
        assert isinstance(from_env.org_configs.list(), list)

    with Prism(api_key=GATEWAY_KEY, control_plane_url=f"http://127.0.0.1:{free_port()}", admin_key=ADMIN_KEY) as down:
        with pytest.raises(prism.APIConnectionError) as conn:
            down.providers.health()
    assert conn.value.status is None


def test_data_plane_without_a_gateway_key(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRISM_API_KEY", raising=False)
    client = Prism(base_url=stack.gateway.base_url, admin_key=ADMIN_KEY)
    with pytest.raises(prism.PrismError, match="PRISM_API_KEY"):
        client.chat.completions.create(model="x/y", messages=HELLO)
    monkeypatch.setenv("PRISM_API_KEY", "sk-prism-not-a-real-key")
    with pytest.raises(openai.AuthenticationError):
        chat_text(Prism(base_url=stack.gateway.base_url, max_retries=0), "x/y")
