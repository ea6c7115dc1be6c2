"""Every accepted format, measured on real faces: decode cost, agreement with the JPEG, and
``facerec ingest`` of a folder of mixed formats against the same photos as JPEG.

    .venv/bin/python bench/formats.py ../shared/faces-dev --images 96

1. each photo (a JPEG) saved in every format and bit depth that tests/photo_formats.py makes;
   the detector's decode time per format, in this process;
2. a private stack; ``POST /v1/verify`` of each photo as JPEG against each of its other
   formats (grey ones against the photo as grey JPEG): the similarity is the cosine of the
   two embeddings. Mean, lowest, and how many faces were not found, per format;
3. ``facerec ingest`` of the photos as JPEG into one fresh gallery, then of a folder where
   photo i is in format i mod 14, into another, in the same run: images/s of each.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from harness import private_stack
from ingest import cli_env, ingest_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import photo_formats as formats
from facerec_common.settings import ImageLimits
from facerec_detector.decode import decode_bgr

ORDER = sorted(formats.SUFFIX)


def photos(folder: Path, count: int) -> list[Path]:
    """``count`` photos spread over the folder (its identities/ part when it has one, so
    that every photo holds a face)."""
    root = folder / "identities" if (folder / "identities").is_dir() else folder
    every = sorted(root.rglob("*.jpg"))
    step = max(1, len(every) // count)
    return every[::step][:count]


def decode_ms(zoo: list[dict[str, bytes]]) -> dict[str, float]:
    limits = ImageLimits()
    cost: dict[str, float] = {}
    for name in ORDER:
        start = time.perf_counter()
        for variants in zoo:
            decode_bgr(variants[name], limits)
        cost[name] = (time.perf_counter() - start) * 1000 / len(zoo)
    return cost


def similarity(api: httpx.Client, variants: dict[str, bytes], name: str) -> float | None:
    files = {
        "image1": ("photo.jpg", variants[formats.reference(name)]),
        "image2": (f"photo.{formats.SUFFIX[name]}", variants[name]),
    }
    response = api.post("/v1/verify", params={"wait": 60}, files=files)
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("status") != "done":
        return None  # no face in one of the two
    return float(body["result"]["similarity"])


def ingest(folder: Path, collection: str, env: dict[str, str]) -> tuple[int, float]:
    start = time.perf_counter()
    run = subprocess.run(
        ingest_command(folder, collection), env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if run.returncode not in (0, 2):
        raise SystemExit(f"facerec ingest failed ({run.returncode}): {run.stderr}")
    summary: dict[str, Any] = json.loads(run.stdout)
    return int(summary["uploaded"]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of JPEG photos of faces")
    parser.add_argument("--images", type=int, default=96)
    args = parser.parse_args()
    files = photos(args.folder, args.images)
    zoo = [formats.variants(f.read_bytes()) for f in files]
    print(f"{len(files)} photos from {args.folder}, each in {len(ORDER)} formats")

    cost = decode_ms(zoo)

    with private_stack() as (tmp, stack, api):
        similarity(api, zoo[0], "png8")  # warm up
        scores: dict[str, list[float]] = defaultdict(list)
        missed: dict[str, int] = defaultdict(int)
        jobs = [(v, name) for v in zoo for name in ORDER if name != formats.reference(name)]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda job: similarity(api, *job), jobs))
        for (_, name), answer in zip(jobs, answers, strict=True):
            if answer is None:
                missed[name] += 1
            else:
                scores[name].append(answer)

        as_jpeg, mixed = tmp / "as-jpeg", tmp / "mixed"
        as_jpeg.mkdir()
        mixed.mkdir()
        for i, variants in enumerate(zoo):
            name = ORDER[i % len(ORDER)]
            (as_jpeg / f"{i:04d}.jpg").write_bytes(variants["jpeg"])
            (mixed / f"{i:04d}.{formats.SUFFIX[name]}").write_bytes(variants[name])
        sizes = {f.name: sum(p.stat().st_size for p in f.iterdir()) for f in (as_jpeg, mixed)}
        env = cli_env(stack, tmp)
        jpeg_n, jpeg_s = ingest(as_jpeg, "bench-jpeg", env)
        mixed_n, mixed_s = ingest(mixed, "bench-mixed", env)

    print(f"{'format':12} {'decode ms':>9} {'cosine mean':>11} {'lowest':>7} {'no face':>7}")
    for name in ORDER:
        found = scores.get(name, [])
        mean = f"{statistics.fmean(found):.4f}" if found else "-"
        low = f"{min(found):.4f}" if found else "-"
        reference = name == formats.reference(name)
        agreement = ("(ref)", "", "") if reference else (mean, low, str(missed[name]))
        print(f"{name:12} {cost[name]:9.2f} {agreement[0]:>11} {agreement[1]:>7} {agreement[2]:>7}")
    for label, n, s, folder in (
        ("as JPEG", jpeg_n, jpeg_s, "as-jpeg"),
        ("mixed", mixed_n, mixed_s, "mixed"),
    ):
        print(
            f"ingest {label:8} {n / s:6.1f} images/s "
            f"({n} images in {s:.1f} s, {sizes[folder] / 1e6:.1f} MB)"
        )
    print(f"ratio mixed / JPEG {(mixed_n / mixed_s) / (jpeg_n / jpeg_s):.2f}")


if __name__ == "__main__":
    main()
