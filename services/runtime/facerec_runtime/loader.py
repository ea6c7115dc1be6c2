"""Loading one model of a pack: checksum first, then an insightface model on onnxruntime."""

import logging
from dataclasses import dataclass
from typing import Any

from insightface.model_zoo import get_model

from facerec_runtime.cpus import model_threads
from facerec_runtime.packs import ModelFile, ModelPack, verified_path
from facerec_runtime.sessions import Role, execution_providers, session_options
from facerec_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

# insightface's name for what a model file is, and the role its providers are built for.
ROLES: dict[str, Role] = {
    "detection": "detector",
    "recognition": "embedder",
    "landmark_2d_106": "landmarks",
}


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # insightface's SCRFD or ArcFaceONNX (untyped)
    providers: list[str]  # what its session runs on, first the one it prefers


def load_model(
    pack: ModelPack,
    model_file: ModelFile,
    task: str,
    settings: RuntimeSettings,
    max_batch: int = 1,
) -> LoadedModel:
    """``task`` is insightface's name for what the file must be: detection, recognition or
    landmark_2d_106; ``max_batch``: the most inputs one call passes."""
    path = verified_path(pack, model_file, settings.models_dir)
    providers = execution_providers(path, ROLES[task], settings, max_batch)
    threads = model_threads(settings.intra_op_threads, settings.model_workers)
    log.info("%s model: %d onnxruntime threads", task, threads)
    model = get_model(str(path), providers=providers, sess_options=session_options(threads))
    if model is None or model.taskname != task:
        raise ValueError(f"{path} is not a {task} model")
    # What onnxruntime actually runs it on: a provider that failed to start is not listed.
    running = list(model.session.get_providers())
    log.info("%s model %s runs on %s", task, path.name, ", ".join(running))
    return LoadedModel(model=model, providers=running)
