import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from facerec_detector.settings import DetectorSettings
from facerec_detector.stage import DetectStage
from facerec_detector.worker import load_stage as load_detect_stage
from facerec_embedder.settings import EmbedderSettings
from facerec_embedder.stage import EmbedStage
from facerec_embedder.worker import load_stage as load_embed_stage
from stack import Stack, redis_server, running_stack

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def int8_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The INT8 pack, made once by its script as a user makes it (about 10 s)."""
    folder = tmp_path_factory.mktemp("buffalo_sc_int8")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_int8_pack.py"), str(folder)],
        check=True,
        capture_output=True,
    )
    return folder


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    with running_stack(workdir, redis_url) as running:
        yield running


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.url, timeout=60, headers={"X-API-Key": stack.admin_key}
    ) as client:
        yield client


# The stages on their own, in this process (tests/test_stages.py, tests/test_crops.py): the
# real models, loaded once.
@pytest.fixture(scope="session")
def detect() -> DetectStage:
    return load_detect_stage(DetectorSettings())


@pytest.fixture(scope="session")
def embed() -> EmbedStage:
    return load_embed_stage(EmbedderSettings())


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection
