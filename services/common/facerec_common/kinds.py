"""Each job kind's way through the stages, in one table.

A job starts at the first stage its kind lists (the detect stage for every image job) and
passes the others in order; the last one finishes it with the kind's result. A worker
never names its next task: it asks this table. Adding a job kind means a row here, its
result model in ``results``, and the work in the stages it passes.
"""

from dataclasses import dataclass

from facerec_common.messages import JobKind
from facerec_common.names import Task


@dataclass(frozen=True)
class StageName:
    """A pipeline stage: what it is called in metrics, tries and dead letters, and the
    task that runs it."""

    name: str
    task: Task


DETECT = StageName("detect", Task.DETECT)
EMBED = StageName("embed", Task.EMBED)
INDEX = StageName("index", Task.INDEX_FACES)


@dataclass(frozen=True)
class KindRoute:
    # The stages the job passes, in order; the last one finishes it.
    stages: tuple[StageName, ...]
    # One face per image, the largest: a photo with none (or several, unless the request
    # allows the largest) is refused.
    one_face: bool = False
    # Refusals are reported per image in the result instead of failing the job.
    refusals_in_result: bool = False
    # A small JPEG of each face is kept with its vector, to be reviewed by eye.
    thumbnails: bool = False
    # The aligned 112x112 crop of each face is kept with its point (losslessly compressed),
    # unless the job's params say not to: what re-embedding with another model needs.
    keeps_crops: bool = False

    def finishes(self, stage: StageName) -> bool:
        return self.stages[-1] == stage

    def after(self, stage: StageName) -> StageName | None:
        """The stage that takes the job on after ``stage``; None where ``stage`` ends it."""
        position = self.stages.index(stage)
        return self.stages[position + 1] if position + 1 < len(self.stages) else None


ROUTES: dict[JobKind, KindRoute] = {
    JobKind.DETECT: KindRoute((DETECT,)),
    # The two faces are compared in the embedder: no index is read.
    JobKind.VERIFY: KindRoute((DETECT, EMBED), one_face=True),
    JobKind.RECOGNIZE: KindRoute((DETECT, EMBED, INDEX)),
    JobKind.ENROLL: KindRoute(
        (DETECT, EMBED, INDEX),
        one_face=True,
        refusals_in_result=True,
        thumbnails=True,
        keeps_crops=True,
    ),
    JobKind.VERIFY_IDENTITY: KindRoute((DETECT, EMBED, INDEX), one_face=True),
    # Batch faces keep their crops too: a person (cluster of unassigned faces) survives a
    # model migration only if its faces can be embedded again.
    JobKind.BATCH: KindRoute((DETECT, EMBED, INDEX), thumbnails=True, keeps_crops=True),
    # Embeddings handed out: the embedder answers, the index is not read.
    JobKind.REPRESENT: KindRoute((DETECT, EMBED)),
    # A supplied vector has no image to detect in: the job starts at the embedder, which
    # checks the vector's model tag and adds how its model scores.
    JobKind.SEARCH: KindRoute((EMBED, INDEX)),
    # Kept crops of a migrating gallery: embedded with the target pack, stored in its index.
    JobKind.MIGRATE: KindRoute((EMBED, INDEX)),
}


def route(kind: JobKind) -> KindRoute:
    return ROUTES[kind]
