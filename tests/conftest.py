from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack import Stack, redis_server, running_stack


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
