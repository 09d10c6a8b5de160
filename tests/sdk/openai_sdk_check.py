"""The official `openai` SDK, unchanged, against a running Prism.

usage: openai_sdk_check.py BASE_URL API_KEY MODEL [MODEL ...]
Each MODEL is exercised for chat (JSON and stream, with usage), streamed parallel tool calls,
legacy completions, embeddings with the SDK's default encoding (base64) and models. A model
prefixed with `chat-only:` skips completions and embeddings (providers without them);
`own-usage:` marks a provider that sends stream usage on its own terms (Mistral: always,
which the generic mock does not imitate), so the usage chunk is not required.
Prints one line per check and `N passed, N failed` at the end; exits 1 on any failure.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key, models = sys.argv[1], sys.argv[2], sys.argv[3:]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time",
     "parameters": {"type": "object", "properties": {}}}},
]


def chat(model):
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
    assert r.object == "chat.completion", r
    assert r.model == model, r.model
    assert "received" in r.choices[0].message.content, r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens > 0


def stream(model, need_usage=True):
    text, finishes, usage = "", [], None
    for chunk in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello"}], stream=True,
            stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            if c.finish_reason:
                finishes.append(c.finish_reason)
    assert "received" in text, text
    assert finishes == ["stop"], finishes
    if need_usage:
        assert usage is not None and usage.total_tokens > 0, usage


def parallel_tools(model):
    calls = {}
    finish = None
    for chunk in client.chat.completions.create(
            model=model, stream=True, tools=TOOLS, tool_choice="required",
            messages=[{"role": "user", "content": "call tools: weather in Paris and the time"}]):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
            if c.finish_reason:
                finish = c.finish_reason
    assert finish == "tool_calls", finish
    assert sorted(calls) == [0, 1], calls
    names = sorted(c["name"] for c in calls.values())
    assert names == ["get_time", "get_weather"], calls
    for c in calls.values():
        assert c["id"], calls
        json.loads(c["args"] or "!")  # arguments always a complete JSON string
    # And the non-streamed form.
    r = client.chat.completions.create(model=model, tools=TOOLS, tool_choice="required",
                                       messages=[{"role": "user", "content": "call tools"}])
    tcs = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and len(tcs) == 2, r
    for tc in tcs:
        json.loads(tc.function.arguments)


def completions(model):
    r = client.completions.create(model=model, prompt="Say hi", max_tokens=50)
    assert r.object == "text_completion", r
    assert "received" in r.choices[0].text, r.choices[0].text
    text = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="Say hi", max_tokens=50, stream=True) if c.choices)
    assert "received" in text, text


def embeddings(model):
    r = client.embeddings.create(model=model, input=["a", "b", "c"])  # SDK asks for base64
    assert len(r.data) == 3 and all(len(d.embedding) > 0 for d in r.data), r
    assert [d.index for d in r.data] == [0, 1, 2]
    f = client.embeddings.create(model=model, input="a", encoding_format="float")
    assert abs(f.data[0].embedding[0] - r.data[0].embedding[0]) < 1e-6


def errors(model):
    try:
        client.chat.completions.create(model="nope/x", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("expected NotFoundError")
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e
    # A failure after content has streamed is raised by the SDK, never a clean finish.
    got = ""
    try:
        for chunk in client.chat.completions.create(
                model=model + "@inband_error_after=2", stream=True,
                messages=[{"role": "user", "content": "Hello"}]):
            got += "".join(c.delta.content or "" for c in chunk.choices)
        raise AssertionError("expected APIError after: " + got)
    except openai.APIError as e:
        assert got, "content arrived before the error"
        assert not isinstance(e, openai.APIStatusError), "an in-band error, not an HTTP status"
    bad = OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("expected AuthenticationError")
    except openai.AuthenticationError:
        pass


def models_list():
    ids = [m.id for m in client.models.list()]
    assert ids, ids


for spec in models:
    chat_only = spec.startswith("chat-only:")
    own_usage = spec.startswith("own-usage:")
    model = spec.removeprefix("chat-only:").removeprefix("own-usage:")
    check(f"{model} chat", lambda: chat(model))
    check(f"{model} stream", lambda: stream(model, not own_usage))
    check(f"{model} parallel tool calls", lambda: parallel_tools(model))
    if not chat_only:
        check(f"{model} completions", lambda: completions(model))
        check(f"{model} embeddings", lambda: embeddings(model))
check("errors", lambda: errors(models[0].split(":", 1)[-1]))
check("models", models_list)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
