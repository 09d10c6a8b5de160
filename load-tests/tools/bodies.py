#!/usr/bin/env python3
"""Write the request bodies of the load-test scenarios into a directory.

chat.json      non-streaming chat (the mock answers about 0.6 KB at once)
sse20.json     streaming chat, 20 content chunks, OpenAI pass-through
anth20.json    the same stream through Prism's Anthropic translator
body64k.json   non-streaming chat whose body is exactly 64 KiB
body1m.json    non-streaming chat whose body is exactly 1 MiB
"""

import json
import sys
from pathlib import Path


def chat(model, content, stream=False):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return body


def padded(model, size):
    """A chat body of exactly `size` bytes: the user message is padded with text."""
    base = json.dumps(chat(model, ""), separators=(",", ":"))
    filler = size - len(base)
    if filler < 0:
        raise SystemExit(f"bodies: {size} bytes is too small for a chat body")
    words = ("lorem ipsum dolor sit amet " * (filler // 27 + 1))[:filler]
    out = json.dumps(chat(model, words), separators=(",", ":"))
    assert len(out) == size, (len(out), size)
    return out


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: bodies.py OUTDIR NONSTREAM_TOKENS")
    out = Path(sys.argv[1])
    tokens = int(sys.argv[2])
    # the mock's default is 8 words (an answer of about 0.6 KB): then the plain model name
    plain = "openai/m" if tokens == 8 else f"openai/m@tokens={tokens}"
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "chat.json": json.dumps(chat(plain, "Hello, how are you?")),
        "sse20.json": json.dumps(chat("openai/m@tokens=20", "Hello, how are you?", stream=True)),
        "anth20.json": json.dumps(chat("anthropic/m@tokens=20", "Hello, how are you?", stream=True)),
        "body64k.json": padded(plain, 64 * 1024),
        "body1m.json": padded(plain, 1024 * 1024),
    }
    for name, text in files.items():
        (out / name).write_text(text)


if __name__ == "__main__":
    main()
