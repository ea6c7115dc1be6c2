"""Pieces that need no running stack: model checksums, message encoding, ids."""

import time
from pathlib import Path

import numpy as np
import pytest
from facerec_common.codec import pack_crops, pack_vectors, unpack_crops, unpack_vectors
from facerec_common.errors import InvalidInput, ModelFileMismatch
from facerec_common.messages import (
    DetectedFace,
    ImageRef,
    JobKind,
    JobParams,
    PipelineMessage,
    Refusal,
)
from facerec_common.scores import Calibration, resolve_threshold
from facerec_gateway.ids import sortable_id
from facerec_runtime.packs import (
    KNOWN_PACKS,
    SHA256SUMS,
    bundled_models_dir,
    file_sha256,
    verified_path,
)
from kombu.serialization import dumps, loads


def test_the_bundled_pack_matches_its_pinned_checksums() -> None:
    pack = KNOWN_PACKS["buffalo_sc"]
    for model in (pack.detector, pack.recognizer):
        assert verified_path(pack, model, None) == bundled_models_dir() / model.filename


def test_a_models_dir_is_checked_against_its_sha256sums(tmp_path: Path) -> None:
    pack = KNOWN_PACKS["buffalo_l"]
    model = tmp_path / pack.detector.filename
    model.write_bytes(b"pretend onnx")
    with pytest.raises(ModelFileMismatch, match="no sha256 is recorded"):
        verified_path(pack, pack.detector, tmp_path)
    (tmp_path / SHA256SUMS).write_text(f"{file_sha256(model)}  {model.name}\n")
    assert verified_path(pack, pack.detector, tmp_path) == model
    model.write_bytes(b"tampered onnx")
    with pytest.raises(ModelFileMismatch, match="expected"):
        verified_path(pack, pack.detector, tmp_path)
    with pytest.raises(ModelFileMismatch, match="does not exist"):
        verified_path(pack, pack.recognizer, tmp_path)


def test_a_pipeline_message_survives_celerys_msgpack_encoding() -> None:
    crops = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)
    vectors = np.random.default_rng(1).standard_normal((2, 512)).astype(np.float32)
    msg = PipelineMessage(
        job_id="j",
        kind=JobKind.ENROLL,
        tenant="t",
        images=[ImageRef(index=0, name="a.jpg", refused=Refusal.NO_FACE)],
        faces=[DetectedFace(image=0, bbox=[1, 2, 3, 4], landmarks=[[1, 2]] * 5, det_score=0.9)],
        crops=pack_crops(crops),
        vectors=pack_vectors(vectors),
        dim=512,
    )
    # kombu is untyped; these are the calls Celery makes to send and receive a task.
    content_type, encoding, body = dumps(msg.to_task(), serializer="msgpack")  # type: ignore[no-untyped-call]
    decoded = PipelineMessage.model_validate(
        loads(body, content_type, encoding, accept=["application/x-msgpack"])  # type: ignore[no-untyped-call]
    )
    assert decoded == msg
    assert np.array_equal(unpack_crops(decoded.crops), crops)
    assert np.array_equal(unpack_vectors(decoded.vectors, 512), vectors)
    # Binary, not JSON floats: 4 bytes a float plus framing.
    assert len(body) < crops.nbytes + vectors.nbytes + 1024


def test_sortable_ids_sort_by_creation_time() -> None:
    ids = []
    for _ in range(3):
        ids.append(sortable_id())
        time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_the_threshold_comes_from_the_request_then_the_gallery_then_the_model() -> None:
    calibration = Calibration(21.4874, -5.8199)
    assert resolve_threshold(JobParams(), None, 0.3, calibration) == 0.3
    assert resolve_threshold(JobParams(), 0.45, 0.3, calibration) == 0.45
    assert resolve_threshold(JobParams(threshold=0.2), 0.45, 0.3, calibration) == 0.2
    by_confidence = resolve_threshold(JobParams(confidence_threshold=0.9), 0.45, 0.3, calibration)
    assert calibration.confidence(by_confidence) == pytest.approx(0.9, abs=1e-3)
    with pytest.raises(InvalidInput, match="no confidence calibration"):
        resolve_threshold(JobParams(confidence_threshold=0.9), None, 0.3, None)
