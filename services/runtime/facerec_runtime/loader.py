"""Loading one model of a pack: checksum first, then an insightface model on onnxruntime."""

import logging
from dataclasses import dataclass
from typing import Any

from insightface.model_zoo import get_model

from facerec_runtime.cpus import model_threads
from facerec_runtime.packs import ModelFile, ModelPack, verified_path
from facerec_runtime.sessions import available_providers, session_options
from facerec_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # insightface's SCRFD or ArcFaceONNX (untyped)
    providers: list[str]


def load_model(
    pack: ModelPack, model_file: ModelFile, task: str, settings: RuntimeSettings
) -> LoadedModel:
    """``task`` is insightface's name for what the file must be: detection or recognition."""
    path = verified_path(pack, model_file, settings.models_dir)
    providers = available_providers(settings.providers)
    threads = model_threads(settings.intra_op_threads, settings.model_workers)
    log.info("%s model: %d onnxruntime threads", task, threads)
    model = get_model(str(path), providers=providers, sess_options=session_options(threads))
    if model is None or model.taskname != task:
        raise ValueError(f"{path} is not a {task} model")
    return LoadedModel(model=model, providers=providers)
