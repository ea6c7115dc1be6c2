"""Settings of the model workers (detector, embedder), shared through a mixin."""

from pathlib import Path

from pydantic import Field
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
    intra_op_threads: int = Field(0, ge=0)
