"""Throughput and latency: the full HTTP pipeline against insightface in-process.

    .venv/bin/python bench/pipeline.py ../shared/faces-dev --images 200

Runs the same images through (a) insightface in this process, image by image, and (b) the
real stack (redis-server, the three workers, the gateway) via HTTP recognise with wait,
several requests in flight; then single-image recognise latency, one request at a time.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from faces import InProcess
from harness import percentile, print_settings, private_stack

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """CPU time of ``pid`` and (``children``) every process below it (the gateway's
    server, the indexer's builds)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) * TICK_S
    tree, total = {pid}, 0.0
    for child in sorted(parents):
        if children and (child in tree or parents[child] in tree):
            tree.add(child)
    for child in tree:
        total += times.get(child, 0.0)
    return total


def redis_pid(url: str) -> int | None:
    port = url.rsplit(":", 1)[1].split("/")[0]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        # redis-server retitles itself "redis-server 127.0.0.1:PORT".
        if words and b"redis-server" in words[0] and port.encode() in b" ".join(words):
            return int(cmdline.parent.name)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of JPEG images (searched recursively)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-samples", type=int, default=60)
    args = parser.parse_args()
    files = sorted(args.folder.rglob("*.jpg"))[: args.images]
    payloads = [f.read_bytes() for f in files]
    print(f"{len(files)} images from {args.folder}")

    model = InProcess()
    model.faces(files[0])  # warm up
    per_image = []
    start = time.perf_counter()
    faces_inprocess = 0
    for f in files:
        t = time.perf_counter()
        faces_inprocess += len(model.faces(f)[0])
        per_image.append(time.perf_counter() - t)
    inprocess_rate = len(files) / (time.perf_counter() - start)
    del model

    with private_stack() as (_, stack, api):
        print_settings(stack)
        api.put("/v1/collections/bench").raise_for_status()  # recognise needs a gallery

        def recognize(data: bytes) -> int:
            response = api.post(
                "/v1/collections/bench/recognize",
                params={"wait": 30},
                files={"image": ("i.jpg", data, "image/jpeg")},
            )
            response.raise_for_status()
            return len(response.json()["result"]["faces"])

        for data in payloads[:5]:
            recognize(data)
        pids = {name.removeprefix("facerec_"): proc.pid for name, proc in stack.procs.items()}
        redis = redis_pid(stack.redis_url)
        if redis is not None:
            pids["redis"] = redis
        # This process started the stack: its own time only, not its children's.
        pids["client (this process)"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid, pid != os.getpid()) for name, pid in pids.items()}
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            faces_pipeline = sum(pool.map(recognize, payloads))
        pipeline_rate = len(files) / (time.perf_counter() - start)
        cpu_ms = {
            name: (cpu_seconds(pid, pid != os.getpid()) - cpu_before[name]) / len(files) * 1000
            for name, pid in pids.items()
        }

        latencies = []
        for data in payloads[: args.latency_samples]:
            t = time.perf_counter()
            recognize(data)
            latencies.append(time.perf_counter() - t)

    samples = per_image[: args.latency_samples]
    print(f"faces found: in-process {faces_inprocess}, pipeline {faces_pipeline}")
    print(f"throughput  in-process {inprocess_rate:6.1f} images/s")
    print(
        f"throughput  pipeline   {pipeline_rate:6.1f} images/s "
        f"({args.concurrency} requests in flight)"
    )
    print(f"throughput  ratio pipeline / in-process = {pipeline_rate / inprocess_rate:.2f}")
    p50_in, p95_in = percentile(samples, 50) * 1000, percentile(samples, 95) * 1000
    p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
    print(f"latency     in-process p50 {p50_in:6.1f} ms  p95 {p95_in:6.1f} ms")
    print(
        f"latency     recognise  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms (HTTP, wait, one at a time)"
    )
    print(f"latency     added at p50 {p50 - p50_in:+.1f} ms, at p95 {p95 - p95_in:+.1f} ms")
    # Where the pipeline's CPU goes: on a machine it saturates, the sum bounds throughput.
    print(
        "cpu per image (pipeline run): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in cpu_ms.items())
        + f"; total {sum(cpu_ms.values()):.1f} ms on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
