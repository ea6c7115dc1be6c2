"""Settings of the model workers (detector, embedder), shared through a mixin."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


class RuntimeSettings(BaseSettings):
    # Name of a pack in facerec_runtime.packs.KNOWN_PACKS.
    model_pack: str = "buffalo_sc"
    # A folder with the pack's ONNX files and a SHA256SUMS file; unset: the bundled buffalo_sc.
    models_dir: Path | None = None
    # Preference order; each is used only if this onnxruntime build offers it.
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
