"""Verification accuracy on the faces-dev pairs, and the threshold it suggests.

    .venv/bin/python bench/calibrate.py ../shared/faces-dev

Embeds the labelled (most central) face of each image with the default pack, scores every
pair by cosine similarity, and prints false accept / false reject rates at thresholds.
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from faces import InProcess, central_face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces_dev", type=Path)
    args = parser.parse_args()
    model = InProcess()
    cache: dict[str, np.ndarray | None] = {}

    def vector(rel: str) -> np.ndarray | None:
        if rel not in cache:
            boxes, vectors = model.faces(args.faces_dev / rel)
            cache[rel] = vectors[central_face(boxes, 250, 250)] if len(boxes) else None
        return cache[rel]

    scores, labels, missed = [], [], 0
    with (args.faces_dev / "pairs.csv").open() as stream:
        for row in csv.DictReader(stream):
            a, b = vector(row["file1"]), vector(row["file2"])
            if a is None or b is None:
                missed += 1
                continue
            scores.append(float(a @ b))
            labels.append(row["same"] == "1")
    s, y = np.array(scores), np.array(labels)
    print(
        f"pairs: {len(s)} scored ({y.sum()} same, {(~y).sum()} different), {missed} without a face"
    )
    print("threshold  FAR (different called same)  FRR (same called different)  accuracy")
    best = max(np.arange(0.10, 0.61, 0.01), key=lambda t: ((s >= t) == y).mean())
    for t in sorted({*np.round(np.arange(0.15, 0.50, 0.05), 2), round(float(best), 2)}):
        far = float(((s >= t) & ~y).sum() / max((~y).sum(), 1))
        frr = float(((s < t) & y).sum() / max(y.sum(), 1))
        mark = "  <- best accuracy" if t == round(float(best), 2) else ""
        print(f"{t:9.2f}  {far:27.2%}  {frr:27.2%}  {((s >= t) == y).mean():8.2%}{mark}")
    slope, intercept = platt(s, y)
    print(
        f"confidence = 1 / (1 + exp(-({slope:.4f} * similarity + {intercept:.4f})))"
        "  (Platt scaling)"
    )
    for t in (0.2, 0.25, 0.3, 0.35, 0.4):
        confidence = 1 / (1 + np.exp(-(slope * t + intercept)))
        print(f"  similarity {t:.2f} -> confidence {confidence:.4f}")


def platt(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Fit P(same | similarity) = sigmoid(a * s + b) by Platt's method: Newton steps on the
    log loss against smoothed targets, which keeps the fit finite when the pairs are
    perfectly separable (as these are)."""
    positives, negatives = int(same.sum()), int((~same).sum())
    target = np.where(same, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    a, b = 1.0, 0.0
    features = np.stack([scores, np.ones_like(scores)], axis=1)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * scores + b)))
        gradient = features.T @ (p - target)
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


if __name__ == "__main__":
    main()
