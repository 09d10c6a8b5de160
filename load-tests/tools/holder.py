#!/usr/bin/env python3
"""Hold N concurrent slow requests open through a proxy, for the memory scenarios.

Opens N keep-alive HTTP/1.1 connections to 127.0.0.1, sends one chat request on each (by
default a stream the mock paces with `model@pace=MS`; or any body with --body-file, e.g. a
1 MiB one whose answer the mock delays with `@delay=MS`) and reads the answers. Prints `READY n`
on stdout once every request has received its response headers, or, with --ready-on-send, once
every request is written (or the ramp deadline passed), then `DONE {json}` when every answer
ended or the hold deadline passed.

Bounded: at most N connections, at most `--ramp-secs` to open them, at most `--max-secs` in all.
Only loopback addresses are accepted.
"""

import argparse
import asyncio
import ipaddress
import json
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True, help="HOST:PORT of the proxy (loopback only)")
    p.add_argument("--n", type=int, required=True, help="concurrent streams")
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--model", default="openai/m@tokens=20,pace=1000")
    p.add_argument("--key", default="sk-loadtest")
    p.add_argument("--body-file", help="send this JSON body as it is (then --model is not used)")
    p.add_argument("--ready-on-send", action="store_true", help="READY once every request is written")
    p.add_argument("--connect-parallel", type=int, default=256, help="connects in flight at once")
    p.add_argument("--ramp-secs", type=float, default=30.0, help="deadline for every stream to start")
    p.add_argument("--max-secs", type=float, default=90.0, help="hard deadline for the whole run")
    return p.parse_args()


class Stats:
    def __init__(self):
        self.started = 0  # response headers received
        self.ok_status = 0
        self.bad_status = 0
        self.connect_errors = 0
        self.other_errors = 0
        self.finished = 0  # terminal chunk, or [DONE] then close, seen
        self.close_delimited = 0  # of which ended by the peer closing the connection
        self.bytes = 0


async def one_stream(host, port, request, stats, gate, started_evt_n, ready_on_send):
    counted = False
    try:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats.connect_errors += 1
        started_evt_n()
        return
    try:
        writer.write(request)
        await writer.drain()
        if ready_on_send:
            started_evt_n()
            counted = True
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.1 ") else b"?"
        stats.started += 1
        if status == b"200":
            stats.ok_status += 1
        else:
            stats.bad_status += 1
        if not counted:
            started_evt_n()
            counted = True
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is not None:  # a whole answer (non-streaming): read exactly its body
            await reader.readexactly(length)
            stats.bytes += length
            stats.finished += 1
            return
        # Read until the chunked body ends (zero-length chunk), or the peer closes after the
        # stream's last event (a close-delimited body).
        tail = b""
        while True:
            data = await reader.read(16384)
            if not data:
                if b"[DONE]" in tail:
                    stats.finished += 1
                    stats.close_delimited += 1
                break
            stats.bytes += len(data)
            tail = (tail + data)[-32:]
            if tail.endswith(b"\r\n0\r\n\r\n") or tail == b"0\r\n\r\n":
                stats.finished += 1
                break
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        stats.other_errors += 1
        if not counted:
            started_evt_n()
    finally:
        writer.close()


async def main():
    a = parse_args()
    host, _, port = a.addr.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("holder: only loopback targets are allowed")
    port = int(port)
    n = max(0, min(a.n, 100_000))
    if a.body_file:
        with open(a.body_file, "rb") as f:
            body = f.read()
    else:
        body = json.dumps(
            {"model": a.model, "stream": True, "messages": [{"role": "user", "content": "hold this stream"}]}
        ).encode()
    request = (
        f"POST {a.path} HTTP/1.1\r\nHost: {a.addr}\r\nAuthorization: Bearer {a.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    stats = Stats()
    gate = asyncio.Semaphore(max(1, a.connect_parallel))
    ready = asyncio.Event()
    counted = 0

    def one_started():
        nonlocal counted
        counted += 1
        if counted >= n:
            ready.set()

    t0 = time.monotonic()
    tasks = [asyncio.create_task(one_stream(host, port, request, stats, gate, one_started, a.ready_on_send)) for _ in range(n)]
    if n == 0:
        ready.set()
    try:
        await asyncio.wait_for(ready.wait(), timeout=a.ramp_secs)
    except asyncio.TimeoutError:
        pass
    ramp = time.monotonic() - t0
    print(f"READY {stats.started} ramp_s={ramp:.2f} connect_errors={stats.connect_errors}", flush=True)

    remaining = max(1.0, a.max_secs - (time.monotonic() - t0))
    done, pending = await asyncio.wait(tasks, timeout=remaining)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    result = {
        "n": n,
        "started": stats.started,
        "status_200": stats.ok_status,
        "status_other": stats.bad_status,
        "finished": stats.finished,
        "close_delimited": stats.close_delimited,
        "connect_errors": stats.connect_errors,
        "other_errors": stats.other_errors,
        "cut_at_deadline": len(pending),
        "ramp_s": round(ramp, 2),
        "total_s": round(time.monotonic() - t0, 2),
        "bytes": stats.bytes,
    }
    print("DONE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
