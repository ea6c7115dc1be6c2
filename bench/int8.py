"""The INT8 recogniser (buffalo_sc_int8) against FP32 (buffalo_sc), on the same data in one run.

    .venv/bin/python bench/int8.py ../shared/faces-dev [--int8-dir data/models/buffalo_sc_int8]

The labelled face of each image of the faces-dev verification pairs is found and aligned
once (SCRFD, as calibrate.py does); the same crops are embedded by both models, loaded as
the embedder loads them (sha256 check, insightface's ArcFace wrapper, onnxruntime). Printed
for each: verification accuracy at the threshold fitted to its own scores, FAR and FRR at
the service's default 0.30, its Platt calibration (the constants a pack entry takes),
embeddings per second at batch 16 on one thread and on every core, p50 and p95 latency of
one face alone on one thread, and the ratios INT8 / FP32. Timed runs of the two models
alternate, so load from other processes falls on both. The INT8 model is made with
scripts/make_int8_pack.py into ``--int8-dir`` first when that folder has none; it is
calibrated on the bundled sample photos, never on faces-dev.
"""

import argparse
import csv
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from calibrate import platt
from facerec_runtime.packs import KNOWN_PACKS, verified_path
from facerec_runtime.sessions import session_options
from faces import InProcess, central_face
from insightface.model_zoo import get_model
from insightface.utils import face_align

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_THRESHOLD = 0.30
BATCH = 16
Crop = npt.NDArray[np.uint8]


@dataclass
class Model:
    name: str
    path: Path
    speeds: dict[str, list[float]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def session(self, threads: int) -> object:
        model = get_model(
            str(self.path),
            providers=["CPUExecutionProvider"],
            sess_options=session_options(threads),
        )
        if model is None or model.taskname != "recognition":
            raise SystemExit(f"{self.path} is not a recognition model")
        return model


def embed(model: object, crops: list[Crop]) -> npt.NDArray[np.float32]:
    parts = [
        np.asarray(model.get_feat(crops[i : i + BATCH]), dtype=np.float32)  # type: ignore[attr-defined]
        for i in range(0, len(crops), BATCH)
    ]
    vectors = np.concatenate(parts)
    unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def labelled_crops(faces_dev: Path) -> tuple[list[tuple[str, str, bool]], dict[str, Crop]]:
    """The pairs, and the aligned labelled face of each image that has one."""
    with (faces_dev / "pairs.csv").open() as stream:
        pairs = [(r["file1"], r["file2"], r["same"] == "1") for r in csv.DictReader(stream)]
    finder = InProcess()
    crops: dict[str, Crop] = {}
    for rel in sorted({name for a, b, _ in pairs for name in (a, b)}):
        image = cv2.imread(str(faces_dev / rel))
        if image is None:
            continue
        boxes, landmarks = finder.detector.detect(image, input_size=finder.size)
        if len(boxes) == 0:
            continue
        chosen = central_face(boxes, image.shape[1], image.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            crops[rel] = face_align.norm_crop(image, landmarks[chosen])
    return pairs, crops


def accuracy(
    pairs: list[tuple[str, str, bool]], vectors: dict[str, npt.NDArray[np.float32]]
) -> dict[str, float]:
    scored = [
        (float(vectors[a] @ vectors[b]), same)
        for a, b, same in pairs
        if a in vectors and b in vectors
    ]
    s = np.array([x for x, _ in scored])
    y = np.array([same for _, same in scored])
    grid = np.round(np.arange(0.10, 0.61, 0.01), 2)
    best = float(max(grid, key=lambda t: ((s >= t) == y).mean()))
    slope, intercept = platt(s, y)
    return {
        "pairs": float(len(s)),
        "best_threshold": best,
        "best_accuracy": float(((s >= best) == y).mean()),
        "accuracy_030": float(((s >= DEFAULT_THRESHOLD) == y).mean()),
        "far_030": float(((s >= DEFAULT_THRESHOLD) & ~y).sum() / max((~y).sum(), 1)),
        "frr_030": float(((s < DEFAULT_THRESHOLD) & y).sum() / max(y.sum(), 1)),
        "platt_a": slope,
        "platt_b": intercept,
    }


def timed_rounds(models: list[Model], crops: list[Crop], rounds: int) -> None:
    """Embeddings per second (batch 16) on one thread and on every core, and single-face
    latency on one thread; the models take turns in every round."""
    sessions = {(m.name, t): m.session(t) for m in models for t in (1, 0)}
    sample = crops[: BATCH * 8]
    for session in sessions.values():
        embed(session, sample[:BATCH])  # warm up
    for _ in range(rounds):
        for model in models:
            for threads, label in ((1, "1 thread"), (0, "all cores")):
                start = time.perf_counter()
                embed(sessions[(model.name, threads)], sample)
                rate = len(sample) / (time.perf_counter() - start)
                model.speeds.setdefault(label, []).append(rate)
            single = sessions[(model.name, 1)]
            for crop in crops[:20]:
                start = time.perf_counter()
                embed(single, [crop])
                model.latencies.append((time.perf_counter() - start) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces_dev", type=Path)
    parser.add_argument("--int8-dir", type=Path, default=ROOT / "data/models/buffalo_sc_int8")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    int8_pack = KNOWN_PACKS["buffalo_sc_int8"]
    if not (args.int8_dir / int8_pack.recognizer.filename).is_file():
        print(f"making the INT8 model in {args.int8_dir} (scripts/make_int8_pack.py)")
        script = ROOT / "scripts/make_int8_pack.py"
        subprocess.run([sys.executable, str(script), str(args.int8_dir)], check=True)
    fp32_pack = KNOWN_PACKS["buffalo_sc"]
    models = [
        Model("FP32", verified_path(fp32_pack, fp32_pack.recognizer, None)),
        Model("INT8", verified_path(int8_pack, int8_pack.recognizer, args.int8_dir)),
    ]

    pairs, crops = labelled_crops(args.faces_dev)
    names = sorted(crops)
    print(f"{len(pairs)} pairs, {len(names)} images with a labelled face, from {args.faces_dev}")
    results = {}
    vectors = {}
    for model in models:
        embedded = embed(model.session(0), [crops[n] for n in names])
        vectors[model.name] = embedded
        results[model.name] = accuracy(pairs, dict(zip(names, embedded, strict=True)))
    agreement = np.sum(vectors["FP32"] * vectors["INT8"], axis=1)
    print(
        f"cosine INT8 to FP32, same crop: mean {agreement.mean():.4f}, "
        f"min {agreement.min():.4f}, p5 {np.percentile(agreement, 5):.4f}"
    )
    timed_rounds(models, [crops[n] for n in names], args.rounds)

    print(
        "model  pairs  fitted threshold  accuracy there  accuracy at 0.30  FAR at 0.30  "
        "FRR at 0.30  Platt (a, b)"
    )
    for model in models:
        r = results[model.name]
        print(
            f"{model.name:5s}  {r['pairs']:5.0f}  {r['best_threshold']:16.2f}  "
            f"{r['best_accuracy']:14.2%}  {r['accuracy_030']:16.2%}  {r['far_030']:11.2%}  "
            f"{r['frr_030']:11.2%}  ({r['platt_a']:.4f}, {r['platt_b']:.4f})"
        )
    print("model  embeddings/s 1 thread  embeddings/s all cores  latency 1 face p50  p95")
    for model in models:
        one, every = (float(np.median(model.speeds[k])) for k in ("1 thread", "all cores"))
        p50, p95 = np.percentile(model.latencies, [50, 95])
        print(f"{model.name:5s}  {one:21.1f}  {every:22.1f}  {p50:15.2f} ms  {p95:6.2f} ms")
    fp32, int8 = models
    speed = {k: float(np.median(int8.speeds[k]) / np.median(fp32.speeds[k])) for k in fp32.speeds}
    added = float(np.percentile(int8.latencies, 50) - np.percentile(fp32.latencies, 50))
    print(
        f"ratio INT8 / FP32: throughput {speed['1 thread']:.2f}x on 1 thread, "
        f"{speed['all cores']:.2f}x on all cores; p50 latency added by INT8 {added:+.2f} ms"
    )


if __name__ == "__main__":
    main()
