"""Bulk ingest through the ``facerec`` command against insightface in-process, and single-image
recognise latency alone and while a large ingest runs (interactive before batch priority).

    .venv/bin/python bench/ingest.py ../shared/faces-dev --images 300

1. insightface in this process, image by image, on the first N images: images/s;
2. a private stack (redis-server, the three workers, the gateway); ``facerec ingest`` of a
   folder holding the same N files into a fresh collection, timed from the command's start
   to its exit (it exits once the batch is done): images/s and the ratio to (1);
3. recognise with ``wait``, one request at a time: p50/p95 with the stack idle, then again
   while a second ``facerec ingest`` (all images of the folder, another collection) runs.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from faces import InProcess
from harness import percentile, print_settings, private_stack
from stack import Stack


def link_folder(files: list[Path], source: Path, target: Path) -> Path:
    for f in files:
        link = target / f.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f.resolve())
    return target


def ingest_command(folder: Path, collection: str) -> list[str]:
    return [sys.executable, "-m", "facerec_cli", "ingest", str(folder), "-c", collection, "--json"]


def cli_env(stack: Stack, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FACEREC_URL": stack.url,
        "FACEREC_API_KEY": stack.admin_key,
        "XDG_CACHE_HOME": str(home / "cache"),
    }


def submitted(api: httpx.Client, collection: str) -> int:
    response = api.get(f"/v1/collections/{collection}/batches")
    if response.status_code != 200:
        return 0
    return sum(int(b["counts"]["submitted"]) for b in response.json()["batches"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of JPEG images (searched recursively)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--latency-samples", type=int, default=40)
    args = parser.parse_args()
    every = sorted(args.folder.rglob("*.jpg"))
    files = every[: args.images]
    payloads = [f.read_bytes() for f in files]
    print(f"{len(files)} images from {args.folder}")

    model = InProcess()
    model.faces(files[0])  # warm up
    start = time.perf_counter()
    faces_inprocess = sum(len(model.faces(f)[0]) for f in files)
    inprocess_rate = len(files) / (time.perf_counter() - start)
    del model

    with private_stack() as (tmp, stack, api):
        print_settings(stack)
        env = cli_env(stack, tmp)

        def recognize(data: bytes) -> float:
            t = time.perf_counter()
            response = api.post(
                "/v1/collections/bench/recognize",
                params={"wait": 30},
                files={"image": ("i.jpg", data, "image/jpeg")},
            )
            response.raise_for_status()
            return time.perf_counter() - t

        for data in payloads[:5]:  # warm up
            recognize(data)

        photos = link_folder(files, args.folder, tmp / "photos")
        start = time.perf_counter()
        run = subprocess.run(
            ingest_command(photos, "bench"), env=env, capture_output=True, text=True, check=False
        )
        ingest_s = time.perf_counter() - start
        if run.returncode not in (0, 2):
            raise SystemExit(f"facerec ingest failed ({run.returncode}): {run.stderr}")
        summary: dict[str, Any] = json.loads(run.stdout)
        ingest_rate = summary["uploaded"] / ingest_s

        alone = [recognize(data) for data in payloads[: args.latency_samples]]

        everything = link_folder(every, args.folder, tmp / "everything")
        load = subprocess.Popen(
            ingest_command(everything, "bench-load"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while submitted(api, "bench-load") < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        loaded: list[float] = []
        for data in payloads[: args.latency_samples]:
            if load.poll() is not None:
                break
            loaded.append(recognize(data))
        backlog = api.get("/v1/collections/bench-load/batches").json()["batches"]
        queued_then = sum(int(b["counts"]["queued"]) for b in backlog)
        ran_out = load.poll() is not None
        load.send_signal(signal.SIGINT)
        load.wait(60)

    print(f"faces found: in-process {faces_inprocess}, ingest {summary['faces']} (not too small)")
    print(f"throughput  in-process     {inprocess_rate:6.1f} images/s")
    print(
        f"throughput  facerec ingest {ingest_rate:6.1f} images/s "
        f"({summary['uploaded']} images in {ingest_s:.1f} s, command start to batch done; "
        f"429 waits {summary['server_wait_s']:.1f} s over all upload threads)"
    )
    print(f"throughput  ratio ingest / in-process = {ingest_rate / inprocess_rate:.2f}")
    p50, p95 = percentile(alone, 50) * 1000, percentile(alone, 95) * 1000
    print(f"latency     recognise alone        p50 {p50:6.1f} ms  p95 {p95:6.1f} ms ({len(alone)})")
    if not loaded:
        print("latency     the load ingest ended before any sample was taken")
        return
    l50, l95 = percentile(loaded, 50) * 1000, percentile(loaded, 95) * 1000
    print(
        f"latency     recognise during ingest p50 {l50:6.1f} ms  p95 {l95:6.1f} ms "
        f"({len(loaded)} samples; {queued_then} batch images still queued after them"
        f"{'; the ingest ran out first' if ran_out else ''})"
    )
    print(f"latency     ratio during / alone: p50 {l50 / p50:.2f}  p95 {l95 / p95:.2f}")


if __name__ == "__main__":
    main()
