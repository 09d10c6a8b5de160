"""Start a real Prism gateway (the debug build) and its mock upstreams for the SDK tests.

The binaries come from ``$PRISM_BIN_DIR`` or ``<repo>/target/debug`` (``cargo build --bins``).
Every process listens on a free loopback port and is killed by ``close()``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
GATEWAY_KEY = "sk-prism-sdk-test-key"
ADMIN_KEY = "admin-sdk-test-key"


def bin_dir() -> Path:
    return Path(os.environ.get("PRISM_BIN_DIR") or REPO / "target" / "debug")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(method: str, url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


class Mock:
    """One ``prism-mock`` process: OpenAI format at ``v1``, native formats at ``root``."""

    def __init__(self) -> None:
        exe = bin_dir() / "prism-mock"
        if not exe.exists():
            raise RuntimeError(f"{exe} is missing: run `cargo build --bins` first")
        self.proc = subprocess.Popen(
            [str(exe), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline().strip()
        if "listening on http://" not in banner:
            self.proc.kill()
            raise RuntimeError(f"unexpected prism-mock banner: {banner!r}")
        self.root = banner.rsplit(" ", 1)[-1].rstrip("/")
        self.v1 = f"{self.root}/v1"

    def stats(self) -> dict[str, Any]:
        status, body = http_json("GET", f"{self.root}/_mock/stats")
        assert status == 200, status
        return dict(body)

    def requests(self) -> int:
        return int(self.stats()["requests"])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class Gateway:
    """``prism serve`` with an empty provider list: the tests add providers at runtime."""

    def __init__(self) -> None:
        exe = bin_dir() / "prism"
        if not exe.exists():
            raise RuntimeError(f"{exe} is missing: run `cargo build --bins` first")
        self.dir = Path(tempfile.mkdtemp(prefix="prism-sdk-py-"))
        config = self.dir / "prism.toml"
        config.write_text(
            "[server]\n"
            f'upgrade_sock = "{self.dir / "upgrade.sock"}"\n'
            f'pid_file = "{self.dir / "prism.pid"}"\n'
            "[health]\n"
            'probe_interval = "0s"\n'
        )
        port, admin_port, metrics_port = free_port(), free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.control_plane_url = f"http://127.0.0.1:{admin_port}"
        env = dict(os.environ)
        env.update(
            PRISM_LISTEN=f"127.0.0.1:{port}",
            PRISM_ADMIN_LISTEN=f"127.0.0.1:{admin_port}",
            PRISM_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
            PRISM_DATA_DIR=str(self.dir / "data"),
            PRISM_API_KEYS=GATEWAY_KEY,
            PRISM_ADMIN_KEY=ADMIN_KEY,
            PRISM_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        self.log_path = self.dir / "prism.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "serve", "-c", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if (
                    http_json("GET", f"{self.base_url}/healthz")[0] == 200
                    and http_json("GET", f"{self.control_plane_url}/readyz")[0] == 200
                ):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        log = self.log()
        self.close()
        raise RuntimeError(f"prism did not become ready; its log:\n{log}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
