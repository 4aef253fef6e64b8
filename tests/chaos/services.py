"""The farm's outside parts for a chaos run, each one the driver can stop and start again: moto's S3
server (its data kept across an outage, as a real S3's is) and the controller as a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import boto3
import httpx
from moto.server import ThreadedMotoServer

from controller.cli.client import FarmClient, FarmError

REGION = "us-east-1"
# Throwaway credentials for moto, set before the Ray cluster starts: its raylets, and so the agents,
# inherit them, as the controller process does.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "HF_HUB_OFFLINE": "1",
}


class S3Service:
    """moto's S3 server on a fixed loopback port. It runs in this process, so its buckets live in
    this process's memory and are there again when it starts after an outage: what a real S3 outage
    is (the service stops answering, then comes back with its data)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server

    def stop(self) -> None:
        """Stop answering: connections are refused until `start`."""
        if self._server is None:
            return
        self._server.stop()
        inner = self._server._server  # moto's stop leaves the socket bound; free the port
        if inner is not None:
            inner.server_close()
        self._server = None

    def client(self) -> object:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix`, all pages."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


class ControllerProcess:
    """`wanfarm up` (python -m controller.cli up) joined to the cluster, on S3: SIGKILLed and started
    again on the same data folder and port."""

    def __init__(
        self,
        ray_address: str,
        data_dir: Path,
        port: int,
        bucket: str,
        endpoint: str,
        prefix: str,
        checkpoint_steps: int,
    ):
        self.command = [
            sys.executable, "-m", "controller.cli", "up", "--ray-address", ray_address,
            "--data-dir", str(data_dir), "--port", str(port),
            "--s3-bucket", bucket, "--s3-prefix", prefix, "--s3-endpoint", endpoint,
            "--checkpoint-steps", str(checkpoint_steps),
        ]  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / "controller.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, agents: int, timeout_s: float = 180) -> float:
        """Start it and wait until it serves with `agents` agents; the seconds that took."""
        started = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 -- held while the process runs
        self._process = subprocess.Popen(
            self.command, env=os.environ | CREDENTIALS, stdout=self._log, stderr=subprocess.STDOUT
        )
        client = FarmClient(self.url)
        try:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the controller exited ({self._process.returncode}): see {self.log_path}"
                    )
                try:
                    if len(client.agents()) >= agents:
                        return time.monotonic() - started
                except (FarmError, OSError):
                    pass  # not serving yet
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"the controller did not serve {agents} agents in {timeout_s:.0f} s")
                time.sleep(0.3)
        finally:
            client.close()

    def counters(self, names: tuple[str, ...]) -> dict[str, float]:
        """These counters of its /metrics, summed over their labels (a restart starts them at 0)."""
        totals = dict.fromkeys(names, 0.0)
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=10).text
        except httpx.HTTPError:
            return totals
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
        return totals

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when its machine dies."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)
        self._closed()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
        self._closed()

    def _closed(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
