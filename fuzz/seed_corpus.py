#!/usr/bin/env python3
"""Write the seed corpora of Prism's fuzz targets into fuzz/corpus/<target>/.

Seeds are realistic upstream streams and client requests: the worked cases of
shared/spec/cases.md (section A requests, section C upstream streams), plus a few streams of
our own for shapes the cases do not show (Gemini and Cohere tool calls, OpenAI text with
usage, legacy completions). Each stream seed is written under several headers, the
`[flags][n][n piece sizes]` prefix every stream target reads (see fuzz/src/lib.rs).

Usage: python3 fuzz/seed_corpus.py [path/to/cases.md]
"""

import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CASES = os.path.join(HERE, "..", "..", "shared", "spec", "cases.md")


def sse(events, named=False):
    """`data:` events (dicts or strings) as an SSE stream, `event:` lines from `type`."""
    out = []
    for e in events:
        data = e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))
        if named and not isinstance(e, str):
            out.append(f"event: {e['type']}\n")
        out.append(f"data: {data}\n\n")
    return "".join(out).encode()


def case_blocks(text):
    """Yield (section letter, case heading, label line, block text) for fenced blocks."""
    section = heading = label = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            m = re.match(r"## ([A-Z])\.", line)
            section = m.group(1) if m else ""
        elif line.startswith("### "):
            heading = line
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            yield section, heading, label, "\n".join(lines[i + 1 : j])
            i = j
        elif line.strip():
            label = line
        i += 1


def from_cases(path):
    streams = {"anthropic": [], "gemini": [], "openai": [], "cohere": []}
    requests = []
    if not os.path.exists(path):
        print(f"note: {path} not found; only the built-in seeds are written")
        return streams, requests
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for section, heading, label, block in case_blocks(text):
        if section == "A" and label.startswith("Input") and block.lstrip().startswith("{"):
            requests.append(block.encode())
        if section == "C" and "Upstream" in label and "data:" in block:
            body = (block.strip("\n") + "\n\n").encode()
            for name, key in (
                ("Anthropic", "anthropic"),
                ("Gemini", "gemini"),
                ("Mistral", "openai"),
                ("vLLM", "openai"),
            ):
                if name in heading:
                    streams[key].append(body)
                    # The same stream with CRLF line ends and without the final blank line.
                    streams[key].append(body.replace(b"\n", b"\r\n"))
                    streams[key].append(body.rstrip(b"\n"))
    return streams, requests


def builtin_streams():
    openai_text = sse(
        [
            {"id": "chatcmpl-o1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
            {"id": "chatcmpl-o1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": {"content": "Bonjour"}, "finish_reason": None}]},
            {"id": "chatcmpl-o1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"id": "chatcmpl-o1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
             "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
            "[DONE]",
        ]
    )
    openai_legacy = sse(
        [
            {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
             "choices": [{"text": "Hi", "index": 0, "logprobs": None, "finish_reason": None}]},
            {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
             "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
             "usage": {"prompt_tokens": 2, "completion_tokens": 1}},
            "[DONE]",
        ]
    )
    openai_error = sse([{"error": {"message": "boom", "type": "server_error", "code": 503}}])
    gemini_tools = sse(
        [
            {"candidates": [{"content": {"parts": [{"text": "thinking", "thought": True}, {"text": "Let me look."}],
                                         "role": "model"}, "index": 0}], "responseId": "r-9"},
            {"candidates": [{"content": {"parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                {"functionCall": {"name": "clock", "id": "fc-2"}, "thoughtSignature": "c2ln"}],
                "role": "model"}, "index": 0}],
             "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}},
            {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                             "index": 0}]},
        ]
    )
    gemini_blocked = sse([{"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "r-b"}])
    cohere_text = sse(
        [
            {"type": "message-start", "id": "co-1", "delta": {"message": {"role": "assistant"}}},
            {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hej"}}}},
            {"type": "content-end", "index": 0},
            {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {
                "billed_units": {"input_tokens": 3, "output_tokens": 1},
                "tokens": {"input_tokens": 50, "output_tokens": 1}}}},
        ],
        named=True,
    )
    cohere_tools = sse(
        [
            {"type": "message-start", "id": "co-2", "delta": {"message": {"role": "assistant"}}},
            {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "Looking up"}}},
            {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                "id": "t-1", "type": "function", "function": {"name": "lookup", "arguments": ""}}}}},
            {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {
                "function": {"arguments": "{\"q\":"}}}}},
            {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {
                "function": {"arguments": "\"x\"}"}}}}},
            {"type": "tool-call-end", "index": 0},
            {"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {
                "id": "t-2", "type": "function", "function": {"name": "now", "arguments": ""}}}}},
            {"type": "tool-call-end", "index": 1},
            {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}},
        ],
        named=True,
    )
    cohere_error = sse(
        [
            {"type": "message-start", "id": "co-3", "delta": {"message": {"role": "assistant"}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Par"}}}},
            {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "generation failed"}},
        ],
        named=True,
    )
    return {
        "openai": [openai_text, openai_legacy, openai_error],
        "gemini": [gemini_tools, gemini_blocked],
        "cohere": [cohere_text, cohere_tools, cohere_error],
        "anthropic": [],
    }


def builtin_requests():
    return [
        json.dumps({"model": "m", "input": ["one", "two"], "encoding_format": "base64"}).encode(),
        json.dumps({"model": "m", "prompt": "Say hi", "max_tokens": 5, "stream": True}).encode(),
        json.dumps({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_object"}, "stream": True,
            "stream_options": {"include_usage": True}}).encode(),
    ]


# Headers: (flags, piece sizes). n = len(piece sizes); n = 0 is byte by byte.
STREAM_HEADERS = [(0, [255]), (1, [7, 1, 13]), (2, [3]), (3, []), (5, [64, 2]), (9, [5])]


def write(dirname, data):
    os.makedirs(dirname, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def main():
    cases = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CASES
    streams, requests = from_cases(cases)
    for key, extra in builtin_streams().items():
        streams[key].extend(extra)
    requests.extend(builtin_requests())
    corpus = os.path.join(HERE, "corpus")
    counts = {}
    for key, items in streams.items():
        target = f"stream_{key}"
        for body in items:
            for flags, pieces in STREAM_HEADERS:
                write(os.path.join(corpus, target), bytes([flags, len(pieces)] + pieces) + body)
        counts[target] = len(items) * len(STREAM_HEADERS)
    # The SSE decoder sees every stream, with and without a small size limit.
    all_streams = [b for items in streams.values() for b in items]
    all_streams.append(b"event: a\r\ndata: 1\r\n\r\n: keep-alive\n\ndata: x\ndata:y\n\ndata: h\xc3\xa9\r\rdata")
    for body in all_streams:
        for flags, pieces in ((0, [255]), (0, [2, 9]), (33, [4])):
            write(os.path.join(corpus, "sse_decoder"), bytes([flags, len(pieces)] + pieces) + body)
    counts["sse_decoder"] = len(all_streams) * 3
    # Requests under chat, embeddings and completions flags, streaming or not.
    for body in requests:
        for flags in (0x00, 0x03, 0x13, 0x24, 0x29):
            write(os.path.join(corpus, "request_translation"), bytes([flags]) + body)
    counts["request_translation"] = len(requests) * 5
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
