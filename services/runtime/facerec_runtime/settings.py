"""Settings of the model workers (detector, embedder), shared through a mixin."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


class RuntimeSettings(BaseSettings):
    # Name of a pack in facerec_runtime.packs.KNOWN_PACKS.
    model_pack: str = "buffalo_sc"
    # A folder with the pack's ONNX files and a SHA256SUMS file; unset: the bundled buffalo_sc.
    models_dir: Path | None = None
    # Preference order; each is used only if this onnxruntime build offers it. TensorRT
    # (TensorrtExecutionProvider) is used only when named here: it needs TensorRT's own
    # libraries, which the GPU images do not install.
    providers: list[str] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    # onnxruntime threads; 0: the CPUs this process may use (affinity, cgroup quota)
    # divided among the model workers that share them (see facerec_runtime.cpus).
    intra_op_threads: int = Field(0, ge=0)
    # How many model workers share this machine's (or container's) CPUs: 1 in a container
    # of its own; scripts/start.sh runs the detector and the embedder side by side: 2.
    model_workers: int = Field(
        1, ge=1, validation_alias=AliasChoices("FACEREC_MODEL_WORKERS", "model_workers")
    )
    # The GPU the CUDA and TensorRT providers run on.
    device_id: int = Field(0, ge=0)
    # How cuDNN picks convolution algorithms: HEURISTIC decides at once; EXHAUSTIVE
    # benchmarks them for every new input shape (the detector sees many sizes).
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    # TensorRT only: build engines in FP16 (else FP32).
    trt_fp16: bool = True
    # TensorRT only: where built engines are kept; unset: facerec-trt-cache in the
    # temporary directory. Each engine's name encodes the model file's sha256, the input
    # shapes and the precision (facerec_runtime.sessions.trt_cache_prefix).
    trt_cache_dir: Path | None = None
    # TensorRT only: bytes of GPU memory an engine build may use as scratch space.
    trt_max_workspace_size: int = Field(2 * 1024**3, ge=1 << 20)
