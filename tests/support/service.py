"""The real service for tests that talk to it over HTTP: `python run.py` (or `make run`) on free ports.

Embedded mode (MONGO_URI and REDIS_URL unset, whatever a .env says): one gunicorn API process, the ZeroMQ broker
and, unless WORKERS=0, `python worker.py` processes fed over real TCP sockets, all on the SQLite file in the
test's own DATA_FOLDER.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from app.api import keys
from tests.support import REPO, free_port

AS_KEY = object()  # request(): send the server's key


def multipart(data: bytes | None, filename: str, fields: list[tuple[str, bytes]] = ()) -> tuple[bytes, dict]:
    """A multipart body with `data` as its `file` part (None: no file part) after `fields`, as a browser or
    `curl -F` sends it, and its header."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields
    ]
    if data is not None:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                f"Content-Type: text/csv\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def send_until_answered(port: int, key: str, parts: int, part: bytes, boundary: str) -> tuple[int, bytes]:
    """POST a form of `parts` copies of `part` and no file, announcing its whole length, writing until the
    server answers; returns the body bytes written by then and the answer."""
    closing = f"--{boundary}--\r\n".encode()
    head = (
        f"POST /api/v1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {parts * len(part) + len(closing)}\r\n\r\n"
    ).encode()
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(parts):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered
                sock.sendall(part)
                sent += len(part)
        except OSError:  # it closed while we wrote: its answer is already on its way
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return sent, answer


class Server:
    """HTTP to a running service, one connection per request; `key` (a secret) is sent unless told otherwise."""

    def __init__(self, port: int, key: str | None = None, timeout: float = 30):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.key = key
        self.timeout = timeout

    def request(self, method, path, body=None, headers=None, raw=False, key=AS_KEY):
        """`key`: a secret or token to send instead of the server's, or None to send none."""
        key = self.key if key is AS_KEY else key
        headers = dict(headers or {})
        if key and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {key}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if raw:
                return response.status, dict(response.getheaders()), data
            return response.status, dict(response.getheaders()), json.loads(data) if data else None
        finally:
            conn.close()

    def upload(self, path, filename, url="/api/v1/upload", key=AS_KEY):
        body, headers = multipart(path.read_bytes(), filename)
        return self.request("POST", url, body, headers, key=key)

    def wait_for(self, task_id, timeout=60, key=AS_KEY):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _, task = self.request("GET", f"/api/v1/process/{task_id}", key=key)
            if task["status"] in ("completed", "failed", "cancelled"):
                return task
            time.sleep(0.2)
        raise AssertionError(f"task {task_id} did not finish: {task}")


class Service:
    """The service in a process group of its own, its output in `log_path`; `settings` are its environment."""

    def __init__(self, workdir: Path, command: list[str] | None = None, **settings: str):
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.command = command or [sys.executable, "run.py"]
        self.env = {
            **os.environ,
            "MONGO_URI": "",
            "REDIS_URL": "",  # embedded, whatever a .env says
            "PORT": str(self.port),
            "ZMQ_PORT": str(free_port()),
            "ZMQ_INTAKE_PORT": str(free_port()),
            "UPLOAD_FOLDER": str(workdir / "uploads"),
            "RESULT_FOLDER": str(workdir / "results"),
            "DATA_FOLDER": str(workdir / "data"),
            # The per-minute limit is off unless a test sets it (tests/test_limits_server.py): a module of tests
            # shares one key and may send more than a minute's worth.
            "HEARTBEAT_SECONDS": "1",
            "RATE_LIMIT_PER_MINUTE": "0",
            **settings,
        }
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Server:
        """Start it; returns once /health answers (and reports a live worker, unless WORKERS=0)."""
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = Server(self.port)
        need_worker = self.env.get("WORKERS") != "0"
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _, body = server.request("GET", "/api/v1/health")
                if status == 200 and (body["worker"] == "ok" or not need_worker):
                    server.key = keys.printed_secret(self.log())  # the admin key an embedded start prints
                    return server
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the service did not come up:\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> str:
        """SIGTERM to the whole group (make and the server alike, as Ctrl-C would); returns the log."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.log()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
