"""Builds one HNSW-indexed shard from copies of others, in a process of its own.

``python -m facerec_indexer.index.build --output OUT --work WORK --dim D INPUT...``
(no INPUT: an empty shard at OUT, the indexer's next live shard)

Qdrant Edge's ``optimize()`` holds the GIL until the graph is built (tens of seconds for
tens of thousands of faces), so the indexer runs it here instead, at a lower CPU priority
than the process answering searches. Steps:

1. copy each input shard's folder into WORK (the indexer sends no writes to an input
   until the file ``WORK/copied`` exists, so the copies are consistent);
2. make the largest copy the shard at OUT, write every point of the others into it and
   build its index (Qdrant reuses the largest copy's HNSW graph);
3. exit 0. The indexer then opens OUT, replays the writes its inputs took meanwhile,
   and puts it in their place. Any other exit leaves the inputs in use, untouched.
"""

import argparse
import ctypes
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import qdrant_edge as qe

from facerec_indexer.index.shards import count, create_shard, pages, shard_config, stored_vector

COPIED = "copied"
PR_SET_PDEATHSIG = 1
log = logging.getLogger("facerec_indexer.build")


def copy_inputs(inputs: list[Path], work: Path) -> list[Path]:
    copies = []
    for number, source in enumerate(inputs):
        copy = work / f"input-{number}"
        shutil.copytree(source, copy)
        copies.append(copy)
    (work / COPIED).touch()
    return copies


def build(copies: list[Path], output: Path, dim: int) -> int:
    """Index the largest copy in place and add the others to it: Qdrant keeps the graph
    of an indexed segment it merges with smaller ones and inserts only their points (a
    shard of 40k faces took 10k more in 5.1 s, against 22.5 s for 50k from scratch)."""
    largest = max(copies, key=_size)
    largest.rename(output)
    shard = qe.EdgeShard.load(str(output), config=shard_config(dim))
    try:
        for copy in copies:
            if copy == largest:
                continue
            source = qe.EdgeShard.load(str(copy))
            try:
                for page in pages(source, with_vector=True):
                    points = [
                        qe.Point(p.id, stored_vector(p.vector), p.payload or {}) for p in page
                    ]
                    if points:
                        shard.update(qe.UpdateOperation.upsert_points(points))
            finally:
                source.close()
        shard.optimize()
        shard.flush()
        return count(shard)
    finally:
        shard.close()


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _die_with_parent() -> None:
    """A build whose indexer died is of no use (the next indexer discards its output and
    may start the same build): have Linux kill it with its parent."""
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            sys.exit("the indexer that started this build is gone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--niceness", type=int, default=10)
    # No inputs: an empty shard, the indexer's next live one (made here, it costs the
    # indexer a load of ~10 ms instead of a creation of ~65 ms).
    parser.add_argument("inputs", type=Path, nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s build %(message)s")
    _die_with_parent()
    # Searches in the indexer come first; the build takes the CPU they leave.
    os.nice(args.niceness)
    if not args.inputs:
        create_shard(args.output, args.dim).close()
        return
    args.work.mkdir(parents=True, exist_ok=True)
    copies = copy_inputs(args.inputs, args.work)
    points = build(copies, args.output, args.dim)
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)  # the largest one is OUT by now
    log.info("built %s: %d points from %d shards", args.output.name, points, len(copies))


if __name__ == "__main__":
    main()
