"""A real `voxport serve` process on loopback for tests: started with --port 0, its real port read from the
line it prints; its metrics read back as numbers."""

import os
import re
import subprocess
import sys
import tempfile
import threading
from queue import Empty, SimpleQueue

import httpx
from prometheus_client.parser import text_string_to_metric_families

STARTUP_SECONDS = 180
API_KEY = "test-key"  # the key of the servers that ask for one, so one server can run every socket test


class Server:
    def __init__(self, *args: str, prefix: tuple[str, ...] = ()):
        """`prefix`: a command the server runs under (e.g. unshare, to give it a read-only or full disk)."""
        if "--voices-dir" not in args:  # never the user's own voices directory
            args = (*args, "--voices-dir", tempfile.mkdtemp(prefix="voxport-voices-"))
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "voxport", "serve", "--port", "0", "--device", "cpu", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        self.lines: SimpleQueue = SimpleQueue()
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()  # a full pipe would stall the server
        self.base = self._wait_for_address()
        self.headers: dict[str, str] = {}  # sent with metric reads (a server with an API key needs it)

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _wait_for_address(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=STARTUP_SECONDS)
            except Empty:
                self.stop()
                raise RuntimeError(f"server did not start: {''.join(self.output)}") from None
            if line is None:
                raise RuntimeError(f"server exited: {''.join(self.output)}")
            if found := re.search(r"serving .* on (http://127\.0\.0\.1:(\d+))", line):
                assert found.group(2) != "0"  # --port 0 prints the port it got
                return found.group(1)

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics, added up over the replicas that report it (0 before any does)."""
        return sum(
            sample.value
            for family in text_string_to_metric_families(
                httpx.get(f"{self.base}/metrics", headers=self.headers, timeout=30).text
            )
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
