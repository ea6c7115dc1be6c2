"""Many clients at once: mixed recognise, enrol and verify, each client with its own key.

    .venv/bin/python bench/load.py --clients 200 --seconds 60
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --clients 200 --seconds 60

Without ``--url`` it starts a private stack (redis-server, the three workers, the
gateway) and prints every setting that stack changes from the defaults; with ``--url``
it loads a running stack (``scripts/start.sh``), with the admin key in FACEREC_API_KEY.
Loopback only; the run is bounded in time (``--seconds``) and in requests (``--max``).

Each client loops: 70 % recognise (wait 30 s), 20 % enrol a face into one of the
gallery's identities, 10 % verify two photos. It prints answers by status and kind,
latency p50/p95/p99 per kind (time to the final answer), and the queue depths sampled
every 5 s.
"""

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import redis
from harness import percentile, print_settings, private_stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import images
from facerec_common.names import queue_lists

JPEG = "image/jpeg"
COLLECTION = "load"


def photos() -> list[bytes]:
    """Different photos (different bytes) of the group and the portrait."""
    out = []
    for i in range(16):
        source = images.group_photo() if i % 2 == 0 else images.portrait()
        out.append(images.variant(source, flip=i % 4 >= 2, scale=0.8 + 0.02 * i, quality=85))
    return out


def setup(api: httpx.Client, clients: int) -> tuple[list[str], list[str]]:
    """A key for every client and a few identities to enrol into, one with a face."""
    keys = []
    for i in range(clients):
        made = api.post("/v1/keys", json={"name": f"load-{i}", "scopes": ["read", "write"]})
        made.raise_for_status()
        keys.append(made.json()["key"])
    identities = []
    for i in range(10):
        made = api.post(
            f"/v1/collections/{COLLECTION}/identities",
            json={"name": f"person-{i}"},
            params={"allow_duplicate_name": True},
        )
        made.raise_for_status()
        identities.append(made.json()["id"])
    enrolled = api.post(
        f"/v1/collections/{COLLECTION}/identities/{identities[0]}/faces",
        params={"wait": 30},
        files={"image": ("p.jpg", images.portrait(), JPEG)},
    )
    enrolled.raise_for_status()
    return keys, identities


async def client_loop(
    url: str,
    key: str,
    pictures: list[bytes],
    identities: list[str],
    deadline: float,
    budget: list[int],
    outcomes: Counter[tuple[str, int]],
    latencies: dict[str, list[float]],
    problems: Counter[str],
    seed: int,
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=60, headers={"X-API-Key": key}) as http:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            roll = rng.random()
            picture = rng.choice(pictures)
            start = time.perf_counter()
            try:
                if roll < 0.7:
                    kind = "recognise"
                    response = await http.post(
                        f"/v1/collections/{COLLECTION}/recognize",
                        params={"wait": 30},
                        files={"image": ("a.jpg", picture, JPEG)},
                    )
                elif roll < 0.9:
                    kind = "enrol"
                    identity = rng.choice(identities)
                    response = await http.post(
                        f"/v1/collections/{COLLECTION}/identities/{identity}/faces",
                        params={"wait": 30, "largest_face": True},
                        files={"image": ("a.jpg", picture, JPEG)},
                    )
                else:
                    kind = "verify"
                    response = await http.post(
                        "/v1/verify",
                        params={"wait": 30},
                        files={
                            "image1": ("a.jpg", picture, JPEG),
                            "image2": ("b.jpg", rng.choice(pictures), JPEG),
                        },
                    )
                status = response.status_code
            except httpx.HTTPError:
                kind, status = "error", 0
            outcomes[(kind, status)] += 1
            if status == 200:
                latencies[kind].append(time.perf_counter() - start)
            elif status >= 400:
                problems[f"{status} {response.json().get('detail', '')[:120]}"] += 1
            if status in (429, 503):
                retry = float(response.headers.get("Retry-After", "1"))
                await asyncio.sleep(min(retry, 5.0))


async def sample_queues(redis_url: str, deadline: float, rows: list[tuple[float, int]]) -> None:
    client = redis.Redis.from_url(redis_url)
    start = time.monotonic()
    names = queue_lists()
    while time.monotonic() < deadline:
        waiting = sum(int(client.llen(name)) for name in names)
        rows.append((time.monotonic() - start, waiting))
        await asyncio.sleep(5)


async def run(
    args: argparse.Namespace, url: str, redis_url: str, keys: list[str], identities: list[str]
) -> None:
    pictures = photos()
    outcomes: Counter[tuple[str, int]] = Counter()
    latencies: dict[str, list[float]] = {"recognise": [], "enrol": [], "verify": []}
    queues: list[tuple[float, int]] = []
    problems: Counter[str] = Counter()
    budget = [args.max]
    started = time.monotonic()
    deadline = started + args.seconds
    await asyncio.gather(
        sample_queues(redis_url, deadline, queues),
        *(
            client_loop(
                url, key, pictures, identities, deadline, budget, outcomes, latencies, problems, i
            )
            for i, key in enumerate(keys)
        ),
    )
    elapsed = time.monotonic() - started
    total = sum(outcomes.values())
    print(f"\n{args.clients} clients, {elapsed:.0f} s, {total} answers ({total / elapsed:.1f}/s)")
    print("answers by kind and status:")
    for (kind, status), count in sorted(outcomes.items()):
        print(f"  {kind:10s} {status or 'no answer':>9}  {count}")
    for problem, count in problems.most_common(5):
        print(f"  {count} x {problem}")
    print("latency of answered requests (s): p50 / p95 / p99")
    for kind, values in latencies.items():
        if values:
            p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
            print(f"  {kind:10s} {p50:6.2f} / {p95:6.2f} / {p99:6.2f}  ({len(values)} answers)")
    print("tasks waiting in the queues over time:")
    print("  " + ", ".join(f"{t:.0f}s: {n}" for t, n in queues))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max", type=int, default=100_000, help="requests in all, at most")
    parser.add_argument("--url", help="a running stack (its admin key in FACEREC_API_KEY)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if args.url:
        with httpx.Client(
            base_url=args.url, timeout=60, headers={"X-API-Key": os.environ["FACEREC_API_KEY"]}
        ) as api:
            keys, identities = setup(api, args.clients)
        asyncio.run(run(args, args.url, args.redis_url, keys, identities))
        return
    with private_stack() as (_, stack, api):
        print_settings(stack)
        keys, identities = setup(api, args.clients)
        asyncio.run(run(args, stack.url, stack.redis_url, keys, identities))


if __name__ == "__main__":
    main()
