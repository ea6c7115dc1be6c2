"""Face grouping quality on faces-dev: pairwise precision and recall against the true people.

    .venv/bin/python bench/cluster.py ../shared/faces-dev [--cache vectors.npz]

Embeds the labelled (most central) face of every identities/ image with the default pack,
then clusters them incrementally (a fixed shuffle, fed in rounds, each round passing the new
faces and those still unclustered) for a grid of max_distance and min_faces. Over all pairs
of faces, outliers counting as singletons: precision = same-person pairs among same-cluster
pairs, recall = same-cluster pairs among same-person pairs.
"""

import argparse
import csv
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from facerec_indexer.clustering import ClusterParams, ExactNeighbours, Vector, assign
from faces import InProcess, central_face


def embed(faces_dev: Path, cache: Path | None) -> tuple[list[str], list[str], Vector]:
    """(file, person, vector) of the labelled face of every identities/ image with one."""
    if cache is not None and cache.exists():
        data = np.load(cache)
        return list(data["files"]), list(data["people"]), data["vectors"]
    model = InProcess()
    files, people, vectors = [], [], []
    with (faces_dev / "manifest.csv").open() as stream:
        for row in csv.DictReader(stream):
            if row["kind"] != "identities":
                continue
            boxes, found = model.faces(faces_dev / row["file"])
            if len(boxes):
                files.append(row["file"])
                people.append(row["identity"])
                vectors.append(found[central_face(boxes, int(row["width"]), int(row["height"]))])
    matrix = np.stack(vectors).astype(np.float32)
    if cache is not None:
        np.savez(cache, files=files, people=people, vectors=matrix)
    return files, people, matrix


def cluster(vectors: Vector, params: ClusterParams, rounds: int, seed: int = 0) -> list[str]:
    """Cluster id (or a singleton id for an outlier) of each face, fed in shuffled rounds."""
    order = np.random.default_rng(seed).permutation(len(vectors))
    index, cluster_of, unclustered = ExactNeighbours(), dict[str, str](), list[str]()
    counter = itertools.count()
    for chunk in np.array_split(order, rounds):
        batch = [(str(i), vectors[i]) for i in chunk]
        index.add(batch)
        passed = [(f, vectors[int(f)]) for f in unclustered] + batch
        cluster_of |= assign(passed, index, cluster_of, params, lambda: f"c{next(counter)}")
        unclustered = [f for f, _ in passed if f not in cluster_of]
    return [cluster_of.get(str(i), f"outlier{i}") for i in range(len(vectors))]


def pairs(groups: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in groups)


def score(people: list[str], clusters: list[str]) -> tuple[float, float, float]:
    together = pairs(Counter(clusters).values())
    same = pairs(Counter(people).values())
    both = pairs(Counter(zip(people, clusters, strict=True)).values())
    precision, recall = both / max(together, 1), both / max(same, 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces_dev", type=Path)
    parser.add_argument("--cache", type=Path, help="npz file to keep the embeddings in")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--shuffles", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    files, people, vectors = embed(args.faces_dev, args.cache)
    print(
        f"faces: {len(files)} of {len(set(people))} people, "
        f"embedded in {time.perf_counter() - started:.0f} s; {args.rounds} rounds"
    )
    print(f"mean over {args.shuffles} shuffles (worst F1 of them in the last column)")
    print("max_distance  min_faces  clusters  outliers  precision  recall      F1  worst F1")
    rows = []
    for distance, min_faces in itertools.product(np.arange(0.50, 0.81, 0.05), (1, 2, 3)):
        params = ClusterParams(min_faces=min_faces, max_distance=round(float(distance), 2))
        runs = []
        for seed in range(args.shuffles):
            clusters = cluster(vectors, params, args.rounds, seed)
            outliers = sum(1 for c in clusters if c.startswith("outlier"))
            runs.append((len(set(clusters)) - outliers, outliers, *score(people, clusters)))
        rows.append((params, *np.mean(runs, axis=0), min(run[-1] for run in runs)))
    best = max(rows, key=lambda row: row[-2])[0]
    for params, count, outliers, precision, recall, f1, worst in rows:
        print(
            f"{params.max_distance:12.2f}  {params.min_faces:9d}  {count:8.1f}  {outliers:8.1f}"
            f"  {precision:9.2%}  {recall:6.2%}  {f1:6.2%}  {worst:8.2%}"
            + ("  <- best" if params == best else "")
        )
    once = score(people, cluster(vectors, best, 1))
    print(
        f"best, all faces in one round: precision {once[0]:.2%}, recall {once[1]:.2%}, "
        f"F1 {once[2]:.2%}"
    )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
