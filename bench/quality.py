"""What the quality filter does to recognition on degraded photos of faces-dev.

    .venv/bin/python bench/quality.py ../shared/faces-dev

The detector's own code finds, aligns and measures each face (facerec_detector: passes,
alignment, quality), the default pack embeds it. The first two thirds of the people
(sorted by name) are enrolled, the rest are strangers. Two ways a bad photo gets in:

- enrol: each enrolled person's photo 1 (clean) and photo 2 (degraded) are enrolled,
  each only if it passes the level (and is not too small); up to two other clean photos
  of each person and of each stranger are recognised without a filter;
- recognise: photos 1 and 2, clean, are enrolled; the probes are degraded and recognised
  with the level as quality_filter (a face under it is skipped: no match).

top-1: the share of enrolled people's probes whose best match is the right person at or
over the default threshold (0.30); false accepts: the share of strangers' probes matched
to anyone at or over it. Skipped and refused faces count as not matched. The last line
is the share of all clean faces-dev faces each level refuses.
"""

import argparse
import csv
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from facerec_common.quality import FaceQuality, QualityFilter, issues
from facerec_detector import passes
from facerec_detector.model import FaceDetector, align
from facerec_detector.quality import measure
from facerec_detector.settings import DetectorSettings
from facerec_runtime.loader import load_model
from facerec_runtime.packs import KNOWN_PACKS

Pixels = npt.NDArray[np.uint8]
THRESHOLD = 0.30
PROBES_PER_PERSON = 2


def blur(sigma: float) -> Callable[[Pixels], Pixels]:
    return lambda image: cv2.GaussianBlur(image, (0, 0), sigma).astype(np.uint8)


def darken(factor: float) -> Callable[[Pixels], Pixels]:
    return lambda image: (image.astype(np.float32) * factor).astype(np.uint8)


def rotate(image: Pixels) -> Pixels:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 45, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.uint8)


def downscale(image: Pixels) -> Pixels:
    h, w = image.shape[:2]
    small = cv2.resize(image, (w * 3 // 10, h * 3 // 10), interpolation=cv2.INTER_AREA)
    return small.astype(np.uint8)


CONDITIONS: dict[str, Callable[[Pixels], Pixels] | None] = {
    "clean": None,
    "blur (Gaussian, sigma 3)": blur(3),
    "blur (Gaussian, sigma 6)": blur(6),
    "dark (x0.15)": darken(0.15),
    "dark (x0.05)": darken(0.05),
    "rotated 45 degrees": rotate,
    "downscaled to 30%": downscale,
}


@dataclass(frozen=True)
class Seen:
    """The labelled face of one photo: its vector and measures (None: no face found)."""

    vector: npt.NDArray[np.float32] | None
    quality: FaceQuality | None
    too_small: bool

    def passes(self, level: QualityFilter) -> bool:
        return (
            self.vector is not None
            and self.quality is not None
            and not self.too_small
            and not issues(self.quality, level)
        )


class Pipeline:
    def __init__(self) -> None:
        self.settings = DetectorSettings()
        pack = KNOWN_PACKS[self.settings.model_pack]
        self.detector = FaceDetector(
            load_model(pack, pack.detector, "detection", self.settings),
            det_size=self.settings.det_size,
            det_thresh=self.settings.det_thresh,
        )
        self.recognizer = load_model(pack, pack.recognizer, "recognition", self.settings).model

    def see(self, image: Pixels) -> Seen:
        h, w = image.shape[:2]
        s = self.settings
        looks = passes.plan(w, h, s.min_face_size, s.det_size, s.max_detect_pixels)
        found = self.detector.detect(image, s.max_faces, looks)
        if len(found.boxes) == 0:
            return Seen(None, None, False)
        centres = (found.boxes[:, :2] + found.boxes[:, 2:4]) / 2
        i = int(np.argmin(np.linalg.norm(centres - np.array([w / 2, h / 2]), axis=1)))
        box, points = found.boxes[i], found.landmarks[i]
        size = float(min(box[2] - box[0], box[3] - box[1]))
        crop = align(image, points[None])[0]
        quality = measure(crop, points, float(found.scores[i]), size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vector = self.recognizer.get_feat([crop])[0]
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        return Seen(vector, quality, size < s.min_face_size)


def best(probe: Seen, gallery: dict[str, list[npt.NDArray[np.float32]]]) -> tuple[str, float]:
    if probe.vector is None:
        return "", -1.0
    scored = [
        (max(float(v @ probe.vector) for v in vectors), person)
        for person, vectors in gallery.items()
        if vectors
    ]
    if not scored:
        return "", -1.0
    similarity, person = max(scored)
    return person, similarity


def rates(
    probes: list[tuple[str, Seen]],
    enrolled: set[str],
    gallery: dict[str, list[npt.NDArray[np.float32]]],
    level: QualityFilter | None,
) -> tuple[float, float, float]:
    """top-1, false accepts, share skipped (level None: no filter on the probes)."""
    hits = accepts = skipped = genuine = strangers = 0
    for person, seen in probes:
        skip = level is not None and not seen.passes(level)
        skipped += skip
        who, similarity = ("", -1.0) if skip else best(seen, gallery)
        if person in enrolled:
            genuine += 1
            hits += who == person and similarity >= THRESHOLD
        else:
            strangers += 1
            accepts += similarity >= THRESHOLD
    return hits / max(genuine, 1), accepts / max(strangers, 1), skipped / max(len(probes), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces_dev", type=Path)
    args = parser.parse_args()
    photos: dict[str, list[str]] = defaultdict(list)
    with (args.faces_dev / "manifest.csv").open() as stream:
        for row in csv.DictReader(stream):
            if row["kind"] == "identities":
                photos[row["identity"]].append(row["file"])
    people = sorted(photos)
    enrolled = set(people[: len(people) * 2 // 3])
    for files in photos.values():
        files.sort(key=lambda f: int(Path(f).stem))
    pipeline = Pipeline()

    def read(file: str) -> Pixels:
        image = cv2.imread(str(args.faces_dev / file), cv2.IMREAD_COLOR)
        assert image is not None, file
        return image.astype(np.uint8)

    clean = {f: pipeline.see(read(f)) for files in photos.values() for f in files}
    probe_files = [
        (person, f)
        for person in people
        for f in (photos[person][2:] if person in enrolled else photos[person])[:PROBES_PER_PERSON]
    ]
    levels = list(QualityFilter)
    print(
        f"{len(people)} people ({len(enrolled)} enrolled), {len(clean)} photos, "
        f"{len(probe_files)} probes; threshold {THRESHOLD}"
    )
    print()
    print(
        "| degradation | filter | enrol: refused | top-1 | false accepts "
        "| recognise: skipped | top-1 | false accepts |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, change in CONDITIONS.items():
        if change is None:
            bad = clean
        else:
            wanted = {photos[p][1] for p in enrolled} | {f for _, f in probe_files}
            bad = {f: pipeline.see(change(read(f))) for f in sorted(wanted)}
        clean_probes = [(p, clean[f]) for p, f in probe_files]
        bad_probes = [(p, bad[f]) for p, f in probe_files]
        clean_gallery: dict[str, list[npt.NDArray[np.float32]]] = {
            p: [v for f in photos[p][:2] if (v := clean[f].vector) is not None] for p in enrolled
        }
        for level in levels:
            gallery: dict[str, list[npt.NDArray[np.float32]]] = {}
            tried = refused = 0
            for p in enrolled:
                kept = []
                for seen in (clean[photos[p][0]], bad[photos[p][1]]):
                    if seen.vector is None:
                        continue
                    tried += 1
                    if seen.passes(level):
                        kept.append(seen.vector)
                    else:
                        refused += 1
                gallery[p] = [v for v in kept if v is not None]
            top1, far, _ = rates(clean_probes, enrolled, gallery, None)
            r_top1, r_far, skipped = rates(bad_probes, enrolled, clean_gallery, level)
            print(
                f"| {name} | {level.value} | {refused / max(tried, 1):.1%} | {top1:.1%} "
                f"| {far:.1%} | {skipped:.1%} | {r_top1:.1%} | {r_far:.1%} |"
            )
    found = [s for s in clean.values() if s.vector is not None and s.quality is not None]
    print()
    print(f"clean faces-dev faces refused ({len(found)} found):")
    for level in levels:
        why: dict[str, int] = defaultdict(int)
        for s in found:
            for issue in issues(s.quality, level) if s.quality is not None else []:
                why[issue.value] += 1
            why["too_small"] += s.too_small
        refused = sum(not s.passes(level) for s in found)
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(why.items()) if n)
        detail = f"{refused}; {reasons}" if reasons else f"{refused}"
        print(f"  {level.value}: {refused / len(found):.1%} ({detail})")


if __name__ == "__main__":
    main()
