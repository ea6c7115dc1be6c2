"""ONNX Runtime sessions: execution providers from settings, filtered by what this build
of onnxruntime offers (CUDA/TensorRT with onnxruntime-gpu, else CPU), each with its options.

TensorRT compiles a model into an engine for a GPU, a precision and a range of input shapes,
which takes minutes; built engines are kept in ``trt_cache_dir`` under a name that encodes
the model file's sha256, the input shapes and the precision (:func:`trt_cache_prefix`), so a
changed model, batch size or precision builds a new engine instead of reusing a stale one.
"""

import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from facerec_runtime.packs import file_sha256
from facerec_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

# What a model file is for: the detector's SCRFD, the embedder's ArcFace (batched up to the
# embedder's batch size), the detector's 106-point landmark model.
Role = Literal["detector", "embedder", "landmarks"]
# A provider as onnxruntime takes it: its name alone, or its name and its options.
ProviderSpec = str | tuple[str, dict[str, str]]
# Short sha256 in engine names: enough to tell model files apart.
SHA_CHARS = 12


def available_providers(preferred: Sequence[str]) -> list[str]:
    """``preferred`` in order, keeping those this onnxruntime offers; CPU always last."""
    offered = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in offered and p != CPU]
    chosen.append(CPU)
    skipped = [p for p in preferred if p not in offered]
    if skipped:
        log.info("execution providers not offered by this onnxruntime: %s", ", ".join(skipped))
    return chosen


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Sized by facerec_runtime.cpus; 0 would let onnxruntime take one per host core.
    options.intra_op_num_threads = intra_op_threads
    # The recognizer's graph declares batch 1 but runs any batch; its shape warning is noise.
    options.log_severity_level = 3
    return options


def model_inputs(model_path: Path) -> list[tuple[str, list[int | str | None]]]:
    """Each input's name and declared shape (a string or None for a free dimension)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=[CPU])
    return [(i.name, list(i.shape)) for i in session.get_inputs()]


def shape_profile(
    inputs: Sequence[tuple[str, Sequence[int | str | None]]], max_batch: int
) -> tuple[str, dict[str, str]]:
    """A name for the input shapes (``1-32x3x112x112``) and TensorRT's profile options.

    A free first dimension is the batch: 1 to ``max_batch``, tuned for ``max_batch``. Any
    other free dimension (the detector's image height and width) has no known bounds: no
    explicit profile then, TensorRT builds for the shapes it meets (``dyn`` in the name)."""
    names: list[str] = []
    lows: list[str] = []
    highs: list[str] = []
    bounded = True
    for name, shape in inputs:
        low: list[int] = []
        high: list[int] = []
        parts: list[str] = []
        for axis, dim in enumerate(shape):
            if isinstance(dim, int) and dim > 0:
                low.append(dim)
                high.append(dim)
                parts.append(str(dim))
            elif axis == 0:
                low.append(1)
                high.append(max_batch)
                parts.append(f"1-{max_batch}" if max_batch > 1 else "1")
            else:
                bounded = False
                parts.append("dyn")
        names.append("x".join(parts))
        lows.append(f"{name}:{'x'.join(map(str, low))}")
        highs.append(f"{name}:{'x'.join(map(str, high))}")
    free = any(not (isinstance(d, int) and d > 0) for _, shape in inputs for d in shape)
    options: dict[str, str] = {}
    if bounded and free:
        options = {
            "trt_profile_min_shapes": ",".join(lows),
            "trt_profile_opt_shapes": ",".join(highs),
            "trt_profile_max_shapes": ",".join(highs),
        }
    return "_".join(names), options


def trt_cache_prefix(model_path: Path, role: Role, shapes: str, fp16: bool) -> str:
    """The engine name: role, model, short sha256 of the file, input shapes, precision."""
    sha = file_sha256(model_path)[:SHA_CHARS]
    precision = "fp16" if fp16 else "fp32"
    name = f"{role}_{model_path.stem}_{sha}_{shapes}_{precision}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def trt_cache_dir(settings: RuntimeSettings) -> Path:
    if settings.trt_cache_dir is not None:
        return settings.trt_cache_dir
    return Path(tempfile.gettempdir()) / "facerec-trt-cache"


def tensorrt_options(
    model_path: Path, role: Role, settings: RuntimeSettings, max_batch: int
) -> dict[str, str]:
    shapes, profile = shape_profile(model_inputs(model_path), max_batch)
    cache = trt_cache_dir(settings)
    cache.mkdir(parents=True, exist_ok=True)
    return {
        "device_id": str(settings.device_id),
        "trt_fp16_enable": str(settings.trt_fp16),
        "trt_max_workspace_size": str(settings.trt_max_workspace_size),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_engine_cache_prefix": trt_cache_prefix(model_path, role, shapes, settings.trt_fp16),
        **profile,
    }


def cuda_options(settings: RuntimeSettings) -> dict[str, str]:
    return {
        "device_id": str(settings.device_id),
        "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
    }


def execution_providers(
    model_path: Path, role: Role, settings: RuntimeSettings, max_batch: int = 1
) -> list[ProviderSpec]:
    """The providers a session of ``model_path`` gets, in order: those of
    ``settings.providers`` that this onnxruntime offers, TensorRT and CUDA with their
    options, CPU last and bare (with only CPU offered: exactly ``["CPUExecutionProvider"]``).
    ``max_batch``: the most inputs one call passes (the embedder's batch size)."""
    specs: list[ProviderSpec] = []
    for name in available_providers(settings.providers):
        if name == TENSORRT:
            specs.append((name, tensorrt_options(model_path, role, settings, max_batch)))
        elif name == CUDA:
            specs.append((name, cuda_options(settings)))
        else:
            specs.append(name)
    return specs
