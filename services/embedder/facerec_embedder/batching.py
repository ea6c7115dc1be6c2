"""Cross-job batching: the crops of tasks running at once go to the model in one call.

An embedder running several tasks at once (Celery's threads pool, ``concurrency`` above 1)
hands each task's crops to one model thread. When the model is free it takes every call
waiting, up to ``max_faces`` crops, and runs them as one batch: on a GPU one call of 32
faces costs little more than one of 1, so faces per second grow with the batch. With
``max_wait_s`` above 0 the model thread, having taken a first call, waits that long for
more before it runs (Triton's ``max_queue_delay``); at 0 it never waits, and batches form
only from calls that queued while the model was busy, adding no latency to a lone request.

Why not a library: ``batched`` (PyPI) polls its queue with a fixed sleep, adding the whole
wait to every lone request, and fails every call of a batch when one call's crops are bad.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from facerec_common.errors import StageTimeout
from facerec_common.metrics import EMBED_BATCH_FACES, EMBED_BATCH_TASKS

log = logging.getLogger(__name__)

Crops = npt.NDArray[np.uint8]
Vectors = npt.NDArray[np.float32]


@dataclass
class _Call:
    crops: Crops
    result: Future[Vectors] = field(default_factory=Future)


class CrossJobBatcher:
    """Runs ``infer`` (crops to vectors, row for row) for calls from many threads, batched."""

    def __init__(
        self,
        infer: Callable[[Crops], Vectors],
        max_faces: int,
        max_wait_s: float,
        call_timeout_s: float,
        name: str,
    ) -> None:
        self._infer = infer
        self._max_faces = max_faces
        self._max_wait_s = max_wait_s
        self._call_timeout_s = call_timeout_s
        self._waiting: list[_Call] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=f"batch-{name}", daemon=True)
        self._thread.start()

    def __call__(self, crops: Crops) -> Vectors:
        """This call's vectors, once the batch it went into has run. A task stopped by the
        stage's time limit raises ``StageTimeout`` (threads of a pool cannot be interrupted
        by a timer signal, as the solo pool's task is)."""
        call = _Call(crops)
        with self._ready:
            self._waiting.append(call)
            self._ready.notify()
        try:
            return call.result.result(timeout=self._call_timeout_s)
        except FutureTimeout as exc:
            raise StageTimeout(
                f"the model did not answer within {self._call_timeout_s:g} s"
            ) from exc

    def _take(self) -> list[_Call]:
        """The calls of the next batch: the oldest call, then whichever others fit."""
        with self._ready:
            while not self._waiting:
                self._ready.wait()
            deadline = time.monotonic() + self._max_wait_s
            while self._faces(self._waiting) < self._max_faces:
                left = deadline - time.monotonic()
                if left <= 0 or not self._ready.wait(left):
                    break
            taken = [self._waiting.pop(0)]
            while self._waiting:
                if self._faces(taken) + len(self._waiting[0].crops) > self._max_faces:
                    break
                taken.append(self._waiting.pop(0))
            return taken

    @staticmethod
    def _faces(calls: list[_Call]) -> int:
        return sum(len(call.crops) for call in calls)

    def _serve(self) -> None:
        while True:
            calls = self._take()
            EMBED_BATCH_TASKS.observe(len(calls))
            EMBED_BATCH_FACES.observe(self._faces(calls))
            try:
                self._run(calls)
            except BaseException:  # never let the model thread die: every caller would hang
                log.exception("the batch thread failed; its calls are failed")
                for call in calls:
                    if not call.result.done():
                        call.result.set_exception(RuntimeError("the batch thread failed"))

    def _run(self, calls: list[_Call]) -> None:
        try:
            vectors = self._infer(np.concatenate([call.crops for call in calls]))
        except Exception as exc:
            if len(calls) == 1:
                calls[0].result.set_exception(exc)
                return
            # One call's crops can fail a whole batch: run each alone, so only it fails.
            for call in calls:
                self._run([call])
            return
        start = 0
        for call in calls:
            call.result.set_result(vectors[start : start + len(call.crops)])
            start += len(call.crops)
