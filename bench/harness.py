"""What the HTTP benchmarks share: a private stack to measure, and percentiles."""

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stack import Stack, redis_server, running_stack


def print_settings(stack: Stack) -> None:
    """Every setting the private stack changes from the defaults, so a figure says what ran."""
    print("private stack; settings it changes from the defaults:")
    for name, value in sorted(stack.env.items()):
        if name.startswith("FACEREC_") and os.environ.get(name) != value:
            print(f"  {name}={'(a fresh key)' if 'KEY' in name else value}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


@contextmanager
def private_stack(
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[Path, Stack, httpx.Client]]:
    """A whole stack (redis-server, the three workers, the gateway) in a temporary folder,
    with an admin client for it; ``extra_env`` changes settings (print_settings shows them)."""
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        redis_server(Path(tmp_name) / "redis") as url,
        running_stack(Path(tmp_name), url, extra_env) as stack,
        httpx.Client(base_url=stack.url, timeout=60, headers={"X-API-Key": stack.admin_key}) as api,
    ):
        yield Path(tmp_name), stack, api
