"""Cross-job batching in the embedder (``facerec_embedder.batching``), on the real model:
calls from many threads meet in one model call and each gets back its own rows, exactly
what it would get alone; a call whose crops break the model fails alone; a call kept past
the stage's limit fails with stage-timeout. The whole path (the threads pool, claims, a
killed batching embedder) is in test_chaos.py."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest
from facerec_common.codec import CROP_SIZE
from facerec_common.errors import StageTimeout
from facerec_common.metrics import EMBED_BATCH_TASKS
from facerec_embedder.batching import CrossJobBatcher
from facerec_embedder.model import Batching, FaceEmbedder
from facerec_embedder.settings import EmbedderSettings
from facerec_runtime.loader import load_model
from facerec_runtime.packs import KNOWN_PACKS
from helpers import histogram_count_sum


def embedder(batching: Batching | None) -> FaceEmbedder:
    settings = EmbedderSettings()
    pack = KNOWN_PACKS[settings.model_pack]
    loaded = load_model(pack, pack.recognizer, "recognition", settings, max_batch=32)
    return FaceEmbedder(loaded, pack.recognizer_name, batch_size=32, batching=batching)


def crops(count: int, seed: int) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)


def model_calls() -> tuple[float, float]:
    """How many model calls the batchers made, and how many task calls they carried."""
    return histogram_count_sum(EMBED_BATCH_TASKS.collect(), "facerec_embed_batch_tasks")


def test_calls_from_many_tasks_go_to_the_model_together_and_get_their_own_rows() -> None:
    alone = embedder(None)
    batched = embedder(Batching(max_wait_s=2.0, call_timeout_s=60))
    inputs = [crops(1 + i % 3, seed=i) for i in range(6)]  # 1 to 3 faces a task
    expected = [alone.embed(c) for c in inputs]
    calls_before, tasks_before = model_calls()
    start = threading.Barrier(len(inputs))

    def task(c: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        start.wait()
        return batched.embed(c)

    with ThreadPoolExecutor(len(inputs)) as pool:
        got = list(pool.map(task, inputs))
    calls, tasks = model_calls()
    assert tasks - tasks_before == len(inputs)
    # Six tasks well inside the two-second window, twelve crops: one model call.
    assert calls - calls_before == 1
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, atol=1e-4)


def test_a_call_that_breaks_the_model_fails_alone() -> None:
    alone = embedder(None)
    batcher = CrossJobBatcher(
        alone.embed, max_faces=32, max_wait_s=0.5, call_timeout_s=60, name="test"
    )
    good, bad = crops(2, seed=7), np.zeros((1, 0, 0, 3), dtype=np.uint8)
    start = threading.Barrier(2)

    def task(c: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        start.wait()
        return batcher(c)

    with ThreadPoolExecutor(2) as pool:
        fine, broken = pool.submit(task, good), pool.submit(task, bad)
        np.testing.assert_allclose(fine.result(), alone.embed(good), atol=1e-4)
        with pytest.raises(ValueError, match="crops must be"):
            broken.result()


def test_a_call_kept_past_the_stage_limit_fails_with_stage_timeout() -> None:
    slow = embedder(Batching(max_wait_s=0.5, call_timeout_s=0.05))
    with pytest.raises(StageTimeout, match="did not answer"):
        slow.embed(crops(1, seed=1))  # the model waits 0.5 s for company first
