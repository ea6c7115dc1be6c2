"""Starting the real stack for tests: a redis-server and each service in its own process."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from facerec_gateway.keys import new_key

SERVICES = ("facerec_detector", "facerec_embedder", "facerec_indexer", "facerec_gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s} s")


@contextmanager
def redis_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/test.sh installs it)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(pings, 10, "redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Stack:
    url: str
    redis_url: str
    logs: Path
    admin_key: str
    env: dict[str, str]
    metrics_urls: dict[str, str] = field(default_factory=dict)  # worker module -> /metrics
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, module: str) -> None:
        log = (self.logs / f"{module}.log").open("ab")
        self.procs[module] = subprocess.Popen(
            [sys.executable, "-m", module], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def running_stack(
    workdir: Path,
    redis_url: str,
    extra_env: dict[str, str] | None = None,
    services: tuple[str, ...] = SERVICES,
) -> Iterator[Stack]:
    """Start ``services`` (all four by default) and wait until the gateway is ready and,
    when every worker was started, until every stage has a live consumer."""
    port = free_port()
    admin_key = new_key()
    metrics_ports = {name: free_port() for name in ("detector", "embedder", "indexer")}
    env = {
        **os.environ,
        "FACEREC_REDIS_URL": redis_url,
        "FACEREC_GATEWAY_PORT": str(port),
        "FACEREC_INDEXER_DATA_DIR": str(workdir / "data"),
        "FACEREC_HEARTBEAT_INTERVAL_S": "1",
        # Batch callbacks in the tests go to receivers on this machine.
        "FACEREC_GATEWAY_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1",
        "FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY": admin_key,
        # As scripts/start.sh runs them: two model workers share the machine's CPUs.
        "FACEREC_MODEL_WORKERS": "2",
        **{f"FACEREC_{name.upper()}_METRICS_PORT": str(p) for name, p in metrics_ports.items()},
        **(extra_env or {}),
    }
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        url=f"http://127.0.0.1:{port}",
        redis_url=redis_url,
        logs=logs,
        admin_key=admin_key,
        env=env,
        metrics_urls={
            f"facerec_{name}": f"http://127.0.0.1:{p}/metrics" for name, p in metrics_ports.items()
        },
    )
    for module in services:
        stack.start(module)
    with_workers = set(SERVICES) <= set(services)

    def ready() -> bool:
        dead = [name for name, up in stack.alive().items() if not up]
        if dead:
            raise RuntimeError(f"{dead} exited during start-up; see {logs}")
        try:
            if httpx.get(f"{stack.url}/readyz", timeout=2).status_code != 200:
                return False
            if not with_workers:
                return True
            # The gateway is ready as soon as Redis answers; the tests also need every
            # stage to have a live consumer (and the index to answer) before they send work.
            status = httpx.get(
                f"{stack.url}/v1/status", headers={"X-API-Key": admin_key}, timeout=2
            )
            return status.status_code == 200 and status.json()["workers_ready"] is True
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 180, "the stack")
        yield stack
    finally:
        stack.stop()


def fill_unrelated_keys(client: redis.Redis, count: int, batch: int = 20_000) -> None:
    """``count`` keys that no health check should read, shaped like what a busy Redis
    holds (job records, images, rate windows), written with MSET in batches."""
    shapes = ("facerec:job:filler-{}", "facerec:img:filler-{}:0", "facerec:rate:filler:{}")
    for start in range(0, count, batch):
        client.mset(
            {
                shapes[i % len(shapes)].format(i): b"x" * 16
                for i in range(start, min(start + batch, count))
            }
        )
