"""Execution providers and their options, per model file and role (facerec_runtime.sessions).

No GPU here: the GPU boundary is faked by making ``onnxruntime.get_available_providers``
offer TensorRT and CUDA. That checks what the workers would ask onnxruntime for (the order,
the options, the TensorRT engine names), not that a GPU runs it. With only CPU offered, a
real session of the bundled recogniser is built from the same list and runs.
"""

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from facerec_runtime.loader import load_model
from facerec_runtime.packs import KNOWN_PACKS, bundled_models_dir, file_sha256
from facerec_runtime.sessions import (
    CPU,
    CUDA,
    TENSORRT,
    ProviderSpec,
    execution_providers,
    session_options,
)
from facerec_runtime.settings import RuntimeSettings

GPU_PREFERENCE = [TENSORRT, CUDA, CPU]
RECOGNISER = bundled_models_dir() / KNOWN_PACKS["buffalo_sc"].recognizer.filename
DETECTOR = bundled_models_dir() / KNOWN_PACKS["buffalo_sc"].detector.filename


@pytest.fixture
def gpu_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The faked GPU boundary: this onnxruntime says it offers TensorRT and CUDA."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU_PREFERENCE)


def settings(tmp_path: Path, **changes: object) -> RuntimeSettings:
    values: dict[str, object] = {"providers": GPU_PREFERENCE, "trt_cache_dir": tmp_path / "trt"}
    return RuntimeSettings.model_validate({**values, **changes})


def names(specs: list[ProviderSpec]) -> list[str]:
    return [spec if isinstance(spec, str) else spec[0] for spec in specs]


def options_of(specs: list[ProviderSpec], name: str) -> dict[str, str]:
    (options,) = [spec[1] for spec in specs if not isinstance(spec, str) and spec[0] == name]
    return options


def trt_prefix(specs: list[ProviderSpec]) -> str:
    return options_of(specs, TENSORRT)["trt_engine_cache_prefix"]


@pytest.mark.usefixtures("gpu_offered")
def test_tensorrt_comes_first_in_fp16_with_an_engine_name_of_model_shapes_and_precision(
    tmp_path: Path,
) -> None:
    specs = execution_providers(RECOGNISER, "embedder", settings(tmp_path), max_batch=32)
    assert names(specs) == [TENSORRT, CUDA, CPU]
    assert specs[-1] == CPU  # bare, as on a CPU-only machine
    trt = options_of(specs, TENSORRT)
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()
    assert trt["device_id"] == "0"
    assert int(trt["trt_max_workspace_size"]) == 2 * 1024**3
    sha = file_sha256(RECOGNISER)[:12]
    assert trt["trt_engine_cache_prefix"] == f"embedder_w600k_mbf_{sha}_1-32x3x112x112_fp16"
    # The embedder's dynamic batch: one face to a full batch, tuned for a full batch.
    assert trt["trt_profile_min_shapes"] == "input.1:1x3x112x112"
    assert trt["trt_profile_opt_shapes"] == "input.1:32x3x112x112"
    assert trt["trt_profile_max_shapes"] == "input.1:32x3x112x112"
    assert options_of(specs, CUDA) == {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"}


@pytest.mark.usefixtures("gpu_offered")
def test_another_model_file_precision_or_batch_never_reuses_an_engine(tmp_path: Path) -> None:
    base = trt_prefix(execution_providers(RECOGNISER, "embedder", settings(tmp_path), 32))
    # The same graph and file name, other bytes: another sha256, another engine.
    changed = onnx.load(str(RECOGNISER))
    changed.doc_string = "retrained"
    other = tmp_path / "other" / RECOGNISER.name
    other.parent.mkdir()
    onnx.save(changed, str(other))
    other_file = trt_prefix(execution_providers(other, "embedder", settings(tmp_path), 32))
    assert other_file != base
    assert file_sha256(other)[:12] in other_file and file_sha256(RECOGNISER)[:12] not in other_file

    fp32 = trt_prefix(
        execution_providers(RECOGNISER, "embedder", settings(tmp_path, trt_fp16=False), 32)
    )
    assert fp32 == base.replace("_fp16", "_fp32") and fp32 != base
    fp32_options = options_of(
        execution_providers(RECOGNISER, "embedder", settings(tmp_path, trt_fp16=False), 32),
        TENSORRT,
    )
    assert fp32_options["trt_fp16_enable"] == "False"

    batch16 = trt_prefix(execution_providers(RECOGNISER, "embedder", settings(tmp_path), 16))
    assert "1-16x3x112x112" in batch16 and batch16 != base


@pytest.mark.usefixtures("gpu_offered")
def test_the_detector_has_free_image_sizes_and_no_fixed_profile(tmp_path: Path) -> None:
    trt = options_of(execution_providers(DETECTOR, "detector", settings(tmp_path)), TENSORRT)
    sha = file_sha256(DETECTOR)[:12]
    assert trt["trt_engine_cache_prefix"] == f"detector_scrfd_500m_bnkps_{sha}_1x3xdynxdyn_fp16"
    assert not any(key.startswith("trt_profile") for key in trt)


@pytest.mark.usefixtures("gpu_offered")
def test_the_preference_order_and_the_device_are_the_settings(tmp_path: Path) -> None:
    cuda_first = settings(
        tmp_path,
        providers=[CUDA, TENSORRT, CPU],
        device_id=1,
        cudnn_conv_algo_search="EXHAUSTIVE",
    )
    specs = execution_providers(RECOGNISER, "embedder", cuda_first)
    assert names(specs) == [CUDA, TENSORRT, CPU]
    assert options_of(specs, CUDA) == {"device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE"}
    assert options_of(specs, TENSORRT)["device_id"] == "1"
    # CPU is last even where it is preferred first, and GPUs can be left out by settings.
    assert names(
        execution_providers(RECOGNISER, "embedder", settings(tmp_path, providers=[CPU, CUDA]))
    ) == [CUDA, CPU]
    assert execution_providers(RECOGNISER, "embedder", settings(tmp_path, providers=[CPU])) == [CPU]


def test_the_default_settings_skip_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU_PREFERENCE)
    defaults = RuntimeSettings()
    assert defaults.trt_fp16 is True
    assert names(execution_providers(RECOGNISER, "embedder", defaults, 32)) == [CUDA, CPU]


def test_with_only_cpu_offered_the_list_is_cpu_and_a_real_session_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    specs = execution_providers(RECOGNISER, "embedder", settings(tmp_path), max_batch=32)
    assert specs == ["CPUExecutionProvider"]
    assert not (tmp_path / "trt").exists()
    session = ort.InferenceSession(str(RECOGNISER), session_options(1), providers=specs)
    assert session.get_providers() == ["CPUExecutionProvider"]
    faces = np.random.default_rng(0).standard_normal((3, 3, 112, 112)).astype(np.float32)
    (vectors,) = session.run(None, {session.get_inputs()[0].name: faces})
    assert vectors.shape == (3, 512) and np.isfinite(vectors).all()


def test_the_loader_logs_what_each_model_runs_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    pack = KNOWN_PACKS["buffalo_sc"]
    with caplog.at_level(logging.INFO, logger="facerec_runtime.loader"):
        loaded = load_model(
            pack, pack.recognizer, "recognition", RuntimeSettings(intra_op_threads=1), 32
        )
    assert loaded.providers == ["CPUExecutionProvider"]
    assert "recognition model w600k_mbf.onnx runs on CPUExecutionProvider" in caplog.text
