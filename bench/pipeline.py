"""Throughput and latency: the full HTTP pipeline against insightface in-process.

    .venv/bin/python bench/pipeline.py ../shared/faces-dev --images 200

Runs the same images through (a) insightface in this process, image by image, and (b) the
real stack (redis-server, the three workers, the gateway) via HTTP recognise with wait,
several requests in flight, alternately for ``--rounds`` rounds (the ratio printed is the
median round's); then single-image recognise latency, one request at a time, and the CPU
each process spent per image in the pipeline rounds.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

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
    parser.add_argument(
        "--rounds", type=int, default=3, help="in-process and pipeline passes, alternated"
    )
    args = parser.parse_args()
    files = sorted(args.folder.rglob("*.jpg"))[: args.images]
    payloads = [f.read_bytes() for f in files]
    print(f"{len(files)} images from {args.folder}, {args.rounds} rounds")

    model = InProcess()
    model.faces(files[0])  # warm up

    def in_process() -> tuple[float, int, list[float]]:
        per_image = []
        faces = 0
        start = time.perf_counter()
        for f in files:
            t = time.perf_counter()
            faces += len(model.faces(f)[0])
            per_image.append(time.perf_counter() - t)
        return len(files) / (time.perf_counter() - start), faces, per_image

    # Every round sends all images: lift the per-key rate limit (600 a minute) above that.
    with private_stack({"FACEREC_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000"}) as (_, stack, api):
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

        def pipeline() -> tuple[float, int]:
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                faces = sum(pool.map(recognize, payloads))
            return len(files) / (time.perf_counter() - start), faces

        # Alternated, so a change in the machine's load over the run meets both sides.
        rates: list[tuple[float, float]] = []
        cpu_total = dict.fromkeys(pids, 0.0)
        for number in range(1, args.rounds + 1):
            inprocess_rate, faces_inprocess, per_image = in_process()
            cpu_before = {name: cpu_seconds(pid, pid != os.getpid()) for name, pid in pids.items()}
            pipeline_rate, faces_pipeline = pipeline()
            for name, pid in pids.items():
                cpu_total[name] += cpu_seconds(pid, pid != os.getpid()) - cpu_before[name]
            rates.append((inprocess_rate, pipeline_rate))
            print(
                f"round {number}: in-process {inprocess_rate:5.1f} images/s, "
                f"pipeline {pipeline_rate:5.1f} images/s, "
                f"ratio {pipeline_rate / inprocess_rate:.2f}"
            )

        latencies = []
        for data in payloads[: args.latency_samples]:
            t = time.perf_counter()
            recognize(data)
            latencies.append(time.perf_counter() - t)

    ratios = sorted(pipeline / inprocess for inprocess, pipeline in rates)
    samples = per_image[: args.latency_samples]
    print(f"faces found: in-process {faces_inprocess}, pipeline {faces_pipeline}")
    print(f"throughput  in-process {median([r[0] for r in rates]):6.1f} images/s (median round)")
    print(
        f"throughput  pipeline   {median([r[1] for r in rates]):6.1f} images/s "
        f"({args.concurrency} requests in flight; median round)"
    )
    print(
        f"throughput  ratio pipeline / in-process = {median(ratios):.2f} "
        f"(median of {len(ratios)} rounds; lowest {ratios[0]:.2f}, highest {ratios[-1]:.2f})"
    )
    p50_in, p95_in = percentile(samples, 50) * 1000, percentile(samples, 95) * 1000
    p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
    print(f"latency     in-process p50 {p50_in:6.1f} ms  p95 {p95_in:6.1f} ms (last round)")
    print(
        f"latency     recognise  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms (HTTP, wait, one at a time)"
    )
    print(f"latency     added at p50 {p50 - p50_in:+.1f} ms, at p95 {p95 - p95_in:+.1f} ms")
    # Where the pipeline's CPU goes: on a machine it saturates, the sum bounds throughput.
    images = len(files) * args.rounds
    cpu_ms = {name: seconds / images * 1000 for name, seconds in cpu_total.items()}
    print(
        "cpu per image (pipeline rounds): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in cpu_ms.items())
        + f"; total {sum(cpu_ms.values()):.1f} ms on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
