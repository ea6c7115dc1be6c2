"""A gallery's model migration, FP32 buffalo_sc to INT8 buffalo_sc_int8, on faces-dev.

    .venv/bin/python bench/migration.py ../shared/faces-dev [--people 96] [--int8-dir DIR]

In one run, on the same data: the real stack (redis-server, the three workers, the
gateway) is started as scripts/start.sh configures it (two model workers sharing the
CPUs), plus FACEREC_EMBEDDER_MIGRATION_PACKS naming the INT8 pack, and every setting
changed is printed. Each faces-dev person (all 96, or the first ``--people`` by name)
gets an identity; all their photos but the last (by number) are enrolled with
largest_face=true, the last is held out as a probe. Printed:

- faces enrolled; FP32 held-out top-1 (a probe is right when its largest face is
  recognised, at the model's threshold, as its own person);
- the migration's speed: faces carried / seconds from the POST that starts it until the
  record says ready (its updated_at), and the seconds 100k faces would take at that rate;
- recognise requests sent one at a time (with ``--search-pause`` between), first for a
  few seconds with no migration, then while it runs: how many, errors, p50 and p95
  latency, and which model answered;
- the check's shares (self_match, leave_one_out, and the old index's leave_one_out);
- after cutover, INT8 held-out top-1 on the migrated gallery, and the difference;
- after finish, the gallery's points left in each model's index, read from the Qdrant
  Edge files once the stack has stopped (the old model's should be 0);
- the INT8 model alone, in this process, loaded as the embedder loads it
  (facerec_embedder.worker.load_stage), embedding the very crops the migration embedded
  (read back from the new index) in batches of the migration's share size, with the
  stack's embedder's thread count and with every core, with the stack stopped; the ratio
  migration faces/s / in-process faces/s (what the pipeline costs on top of the model);
  and FP32 on the same crops and threads, for INT8 against FP32 speed;
- a summary block: date, machine, load average and every figure.

The migration is timed with the probe searches running beside it, on the same CPUs: the
speed is that of a gallery that keeps answering. The INT8 model is made with
scripts/make_int8_pack.py into ``--int8-dir`` first when that folder has none.
"""

import argparse
import base64
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from facerec_embedder.galleries import decoded_crops
from facerec_embedder.settings import EmbedderSettings
from facerec_embedder.worker import load_stage
from facerec_indexer.index.base import CROP, Scope
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.settings import IndexerSettings
from facerec_runtime.cpus import model_threads, usable_cpus
from facerec_runtime.packs import KNOWN_PACKS
from harness import percentile, print_settings
from stack import redis_server, running_stack

ROOT = Path(__file__).resolve().parents[1]
FP32 = "buffalo_sc"
INT8 = "buffalo_sc_int8"
TENANT = "default"  # the bootstrap admin key's tenant
GALLERY = "migration-bench"
JPEG = "image/jpeg"
MODEL_WORKERS = 2  # as scripts/start.sh runs the detector and the embedder
# Seconds of searches timed before the migration starts, with nothing else running.
BASELINE_S = 8.0
# The indexer's migration share (its default): the crops one embedder call gets.
EMBED_BATCH: int = IndexerSettings.model_fields["migration_share_size"].default


@dataclass
class Person:
    name: str
    enrol: list[Path]
    probe: Path
    identity: str = ""


@dataclass
class Searches:
    """Recognise requests sent while the migration runs."""

    stop: threading.Event = field(default_factory=threading.Event)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    models: Counter[str] = field(default_factory=Counter)


def read_people(faces_dev: Path, limit: int | None) -> list[Person]:
    """faces-dev identities with two photos or more: all but the last to enrol, the last
    held out."""
    photos: dict[str, list[Path]] = defaultdict(list)
    with (faces_dev / "manifest.csv").open() as stream:
        for row in csv.DictReader(stream):
            if row["kind"] == "identities":
                photos[row["identity"]].append(faces_dev / row["file"])
    people = []
    for name in sorted(photos):
        files = sorted(photos[name], key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
        if len(files) >= 2:
            people.append(Person(name, files[:-1], files[-1]))
    return people[:limit] if limit else people


def finished(api: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    """The result of a job, polled for while it runs (202)."""
    while response.status_code == 202:
        response = api.get(response.headers["Location"], params={"wait": 30})
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
    body = response.json()
    if body.get("status") != "done":
        raise RuntimeError(f"job {body.get('status')}: {str(body)[:300]}")
    result: dict[str, Any] = body["result"]
    return result


def checked(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    if response.status_code not in (statuses or (200,)):
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"HTTP {response.status_code}: {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


def enrol(api: httpx.Client, person: Person) -> tuple[int, int, int]:
    """Faces enrolled, photos refused, duplicates."""
    created = checked(
        api.post(f"/v1/collections/{GALLERY}/identities", json={"name": person.name}), 201
    )
    person.identity = created["id"]
    files = [("image", (p.name, p.read_bytes(), JPEG)) for p in person.enrol]
    result = finished(
        api,
        api.post(
            f"/v1/collections/{GALLERY}/identities/{person.identity}/faces",
            params={"wait": 30, "largest_face": "true"},
            files=files,
        ),
    )
    return len(result["faces"]), len(result["refused"]), len(result["duplicates"])


def recognise(api: httpx.Client, data: bytes) -> tuple[str | None, str | None]:
    """The identity the largest face is recognised as (None: no match), and the model."""
    result = finished(
        api,
        api.post(
            f"/v1/collections/{GALLERY}/recognize",
            params={"wait": 30},
            files={"image": ("probe.jpg", data, JPEG)},
        ),
    )
    faces = sorted(
        result["faces"],
        key=lambda f: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]),
        reverse=True,
    )
    best = faces[0]["identity"] if faces else None
    return (best["id"] if best else None), result["model"]


def top1(api: httpx.Client, people: list[Person], concurrency: int) -> tuple[float, set[str]]:
    """Share of held-out probes recognised as their own person, and the models answering."""

    def one(person: Person) -> tuple[bool, str | None]:
        found, model = recognise(api, person.probe.read_bytes())
        return found == person.identity, model

    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(one, people))
    return sum(right for right, _ in answers) / len(people), {m for _, m in answers if m}


def search_while(url: str, key: str, probes: list[bytes], pause: float, out: Searches) -> None:
    """Recognise the probes one at a time until told to stop; every failure is counted."""
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": key}) as api:
        i = 0
        while not out.stop.is_set():
            data = probes[i % len(probes)]
            i += 1
            start = time.perf_counter()
            try:
                _, model = recognise(api, data)
            except (httpx.HTTPError, RuntimeError, KeyError) as exc:
                out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                out.latencies.append(time.perf_counter() - start)
                out.models[model or "none"] += 1
            out.stop.wait(pause)


def migration(api: httpx.Client) -> dict[str, Any]:
    return checked(api.get(f"/v1/collections/{GALLERY}/migration"))


def step(api: httpx.Client, name: str) -> dict[str, Any]:
    return checked(api.post(f"/v1/collections/{GALLERY}/migration/{name}"))


def share(measure: dict[str, Any]) -> str:
    return f"{measure['share']:.4f} ({measure['matched']}/{measure['checked']})"


def index_after(data_dir: Path, models: dict[str, str]) -> tuple[dict[str, int], list[bytes]]:
    """With the indexer stopped: the gallery's points in each model's index, and the kept
    crops of the new model's points."""
    index = EdgeIndex(data_dir / "qdrant")
    try:
        counts = {
            model: index.count(Scope(TENANT, GALLERY, model=model)) for model in models.values()
        }
        records = index.scroll(Scope(TENANT, GALLERY, model=models[INT8]))
    finally:
        index.close()
    crops = [base64.b64decode(str(r.payload[CROP])) for r in records if CROP in r.payload]
    return counts, crops


def embed_rate(
    pack: str, models_dir: Path | None, crops: npt.NDArray[np.uint8], workers: int, rounds: int
) -> float:
    """Crops a second, the pack's embed stage loaded as the embedder loads it (the thread
    count of ``workers`` model workers sharing the CPUs), median of ``rounds``."""
    settings = EmbedderSettings().model_copy(
        update={
            "model_pack": pack,
            "models_dir": models_dir,
            "model_workers": workers,
            "batch_size": EMBED_BATCH,
            "providers": ["CPUExecutionProvider"],
        }
    )
    stage = load_stage(settings)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        stage.embedder.embed(crops)
        rates.append(len(crops) / (time.perf_counter() - start))
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces_dev", type=Path)
    parser.add_argument("--people", type=int, default=None, help="the first N (default: all)")
    parser.add_argument("--int8-dir", type=Path, default=ROOT / "data/models/buffalo_sc_int8")
    parser.add_argument("--concurrency", type=int, default=4, help="enrol/top-1 requests")
    parser.add_argument("--search-pause", type=float, default=0.25, help="s between searches")
    parser.add_argument("--rounds", type=int, default=3, help="in-process timing rounds")
    args = parser.parse_args()

    int8_pack = KNOWN_PACKS[INT8]
    if not (args.int8_dir / int8_pack.recognizer.filename).is_file():
        print(f"making the INT8 model in {args.int8_dir} (scripts/make_int8_pack.py)")
        script = ROOT / "scripts/make_int8_pack.py"
        subprocess.run([sys.executable, str(script), str(args.int8_dir)], check=True)
    models = {FP32: KNOWN_PACKS[FP32].recognizer_name, INT8: int8_pack.recognizer_name}
    people = read_people(args.faces_dev, args.people)
    probes = [p.probe.read_bytes() for p in people]
    print(
        f"{len(people)} people from {args.faces_dev}: {sum(len(p.enrol) for p in people)} "
        f"photos to enrol, {len(people)} held out"
    )
    print(
        f"bench settings: gallery {GALLERY!r}, {args.concurrency} enrol/top-1 requests in "
        f"flight, searches during the migration one at a time {args.search_pause} s apart"
    )

    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    env = {"FACEREC_EMBEDDER_MIGRATION_PACKS": json.dumps({INT8: str(args.int8_dir)})}
    fig: dict[str, Any] = {}
    searches = Searches()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with redis_server(tmp / "redis") as url:
            with (
                running_stack(tmp, url, env) as stack,
                httpx.Client(
                    base_url=stack.url, timeout=120, headers={"X-API-Key": stack.admin_key}
                ) as api,
            ):
                print_settings(stack)
                print(
                    "  (unchanged: FACEREC_INDEXER_MIGRATION_SHARE_SIZE="
                    f"{stack.env.get('FACEREC_INDEXER_MIGRATION_SHARE_SIZE', EMBED_BATCH)}"
                    " (default))"
                )
                checked(api.put(f"/v1/collections/{GALLERY}"), 200, 201)

                start = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    enrolled = list(pool.map(lambda p: enrol(api, p), people))
                fig["enrol_s"] = time.perf_counter() - start
                fig["faces"] = sum(f for f, _, _ in enrolled)
                fig["refused"] = sum(r for _, r, _ in enrolled)
                fig["duplicates"] = sum(d for _, _, d in enrolled)
                print(
                    f"enrolled {fig['faces']} faces of {len(people)} people in "
                    f"{fig['enrol_s']:.1f} s ({fig['refused']} photos refused, "
                    f"{fig['duplicates']} duplicates)"
                )

                fig["fp32_top1"], fp32_models = top1(api, people, args.concurrency)
                print(
                    f"FP32 held-out top-1: {fig['fp32_top1']:.4f} "
                    f"({round(fig['fp32_top1'] * len(people))}/{len(people)}, "
                    f"model {', '.join(sorted(fp32_models))})"
                )

                # The same searches with no migration running first: what they cost alone.
                idle = Searches()
                baseline = threading.Thread(
                    target=search_while,
                    args=(stack.url, stack.admin_key, probes, args.search_pause, idle),
                )
                baseline.start()
                time.sleep(BASELINE_S)
                idle.stop.set()
                baseline.join()
                fig["idle_p50_ms"] = percentile(idle.latencies, 50) * 1000
                fig["idle_p95_ms"] = percentile(idle.latencies, 95) * 1000
                print(
                    f"searches with no migration ({BASELINE_S:.0f} s): {len(idle.latencies)} "
                    f"requests, {len(idle.errors)} errors, p50 {fig['idle_p50_ms']:.0f} ms, "
                    f"p95 {fig['idle_p95_ms']:.0f} ms"
                )

                searcher = threading.Thread(
                    target=search_while,
                    args=(stack.url, stack.admin_key, probes, args.search_pause, searches),
                )
                searcher.start()
                posted = time.time()
                try:
                    started = checked(
                        api.post(f"/v1/collections/{GALLERY}/migration", json={"model_pack": INT8}),
                        202,
                    )
                    record = started
                    while record["state"] not in ("ready", "failed"):
                        time.sleep(0.5)
                        record = migration(api)
                finally:
                    searches.stop.set()
                    searcher.join()
                if record["state"] != "ready":
                    raise SystemExit(f"the migration failed: {record.get('error')}")
                fig["migrated"] = record["faces"]
                fig["migration_s"] = float(record["updated_at"]) - posted
                fig["migration_rate"] = fig["migrated"] / fig["migration_s"]
                print(
                    f"migration {started['source']['model']} -> {started['target']['model']}: "
                    f"{fig['migrated']} faces ready {fig['migration_s']:.2f} s after the POST "
                    f"(observed {time.time() - posted:.1f} s, polling every 0.5 s): "
                    f"{fig['migration_rate']:.1f} faces/s; 100k faces: "
                    f"{1e5 / fig['migration_rate']:.0f} s"
                )
                lat = searches.latencies
                fig["searches"] = len(lat) + len(searches.errors)
                fig["search_errors"] = len(searches.errors)
                fig["search_p50_ms"] = percentile(lat, 50) * 1000 if lat else float("nan")
                fig["search_p95_ms"] = percentile(lat, 95) * 1000 if lat else float("nan")
                fig["search_models"] = dict(searches.models)
                print(
                    f"searches during the migration: {fig['searches']} recognise requests, "
                    f"{fig['search_errors']} errors, p50 {fig['search_p50_ms']:.0f} ms, "
                    f"p95 {fig['search_p95_ms']:.0f} ms, answered by {fig['search_models']}"
                )
                for error in searches.errors[:5]:
                    print(f"  search error: {error}")

                check = step(api, "check")
                fig["check"] = check
                print(
                    f"check: faces {check['faces']}, in new index {check['in_shadow']}, "
                    f"missing {check['missing']}, orphans {check['orphans']}; "
                    f"self_match {share(check['self_match'])}, leave_one_out "
                    f"{share(check['leave_one_out'])} at {check['threshold']}, "
                    f"source_leave_one_out {share(check['source_leave_one_out'])} at "
                    f"{check['source_threshold']}"
                )

                cut = step(api, "cutover")
                print(f"cutover: state {cut['state']}")
                fig["int8_top1"], int8_models = top1(api, people, args.concurrency)
                fig["points"] = (fig["int8_top1"] - fig["fp32_top1"]) * 100
                print(
                    f"INT8 held-out top-1 on the migrated gallery: {fig['int8_top1']:.4f} "
                    f"({round(fig['int8_top1'] * len(people))}/{len(people)}, "
                    f"model {', '.join(sorted(int8_models))}); FP32 {fig['fp32_top1']:.4f}, "
                    f"difference {fig['points']:+.1f} points"
                )

                done = step(api, "finish")
                fig["finish_state"] = done["state"]
                rollback = api.post(f"/v1/collections/{GALLERY}/migration/rollback")
                fig["rollback_after"] = rollback.status_code
                print(
                    f"finish: state {done['state']}; a rollback now answers "
                    f"{rollback.status_code} (the old index is gone)"
                )
            # The stack has stopped: the indexer no longer holds the index files.
            fig["counts"], kept = index_after(tmp / "data", models)
            old, new = fig["counts"][models[FP32]], fig["counts"][models[INT8]]
            print(
                f"index files after finish: the gallery's points under {models[FP32]}: "
                f"{old} ({'old index dropped' if old == 0 else 'OLD INDEX NOT DROPPED'}), "
                f"under {models[INT8]}: {new}"
            )

    crops = decoded_crops(kept)
    threads = model_threads(0, MODEL_WORKERS)
    fig["inproc_rate"] = embed_rate(INT8, args.int8_dir, crops, MODEL_WORKERS, args.rounds)
    fig["inproc_all_rate"] = embed_rate(INT8, args.int8_dir, crops, 1, args.rounds)
    # FP32 on the same crops and threads, right after: INT8 against FP32 for speed.
    fig["fp32_rate"] = embed_rate(FP32, None, crops, MODEL_WORKERS, args.rounds)
    fig["ratio"] = fig["migration_rate"] / fig["inproc_rate"]
    print(
        f"INT8 in-process (stack stopped), the {len(crops)} kept crops in batches of "
        f"{EMBED_BATCH}: {fig['inproc_rate']:.1f} faces/s on {threads} thread(s) (as the "
        f"stack's embedder), {fig['inproc_all_rate']:.1f} faces/s on {usable_cpus()}"
    )
    print(
        f"ratio migration / in-process INT8 (same threads): {fig['ratio']:.3f} "
        f"(the pipeline costs {1 / fig['ratio']:.2f}x the model alone)"
    )
    print(
        f"FP32 in-process on the same crops and threads: {fig['fp32_rate']:.1f} faces/s; "
        f"INT8 / FP32 {fig['inproc_rate'] / fig['fp32_rate']:.2f}x"
    )

    check = fig["check"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
        (
            "machine",
            f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load} "
            f"(at start {load_at_start})",
        ),
        ("people", f"{len(people)} ({len(people)} held-out probes)"),
        ("faces enrolled", f"{fig['faces']} ({fig['refused']} photos refused)"),
        ("FP32 top-1", f"{fig['fp32_top1']:.4f}"),
        (
            "migration speed",
            f"{fig['migration_rate']:.1f} faces/s ({fig['migrated']} faces in "
            f"{fig['migration_s']:.2f} s, searches running)",
        ),
        (
            "100k faces at it",
            f"{1e5 / fig['migration_rate']:.0f} s ({1e5 / fig['migration_rate'] / 60:.1f} min)",
        ),
        (
            "INT8 in-process",
            f"{fig['inproc_rate']:.1f} faces/s on {threads} thread(s); "
            f"{fig['inproc_all_rate']:.1f} on {usable_cpus()}",
        ),
        ("migration/in-proc", f"{fig['ratio']:.3f}"),
        (
            "INT8 / FP32 speed",
            f"{fig['inproc_rate'] / fig['fp32_rate']:.2f}x ({fig['fp32_rate']:.1f} faces/s FP32)",
        ),
        (
            "searches meanwhile",
            f"{fig['searches']}, {fig['search_errors']} errors, p50 "
            f"{fig['search_p50_ms']:.0f} ms, p95 {fig['search_p95_ms']:.0f} ms",
        ),
        (
            "searches alone",
            f"p50 {fig['idle_p50_ms']:.0f} ms, p95 {fig['idle_p95_ms']:.0f} ms (no migration)",
        ),
        ("check self_match", share(check["self_match"])),
        ("check leave_one_out", f"{share(check['leave_one_out'])} at {check['threshold']}"),
        (
            "source leave_one_out",
            f"{share(check['source_leave_one_out'])} at {check['source_threshold']}",
        ),
        ("INT8 top-1", f"{fig['int8_top1']:.4f}"),
        ("INT8 - FP32 top-1", f"{fig['points']:+.1f} points"),
        (
            "finish",
            f"{fig['finish_state']}; gallery points left: {models[FP32]} {old}, "
            f"{models[INT8]} {new}; rollback after: HTTP {fig['rollback_after']}",
        ),
    ]
    print("=== summary: bench/migration.py ===")
    for label, value in lines:
        print(f"{label:21s} {value}")


if __name__ == "__main__":
    main()
