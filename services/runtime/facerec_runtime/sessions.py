"""ONNX Runtime sessions: execution providers from settings, filtered by what this build
of onnxruntime offers (CUDA/TensorRT with onnxruntime-gpu, else CPU)."""

import logging
from collections.abc import Sequence

import onnxruntime as ort

log = logging.getLogger(__name__)


def available_providers(preferred: Sequence[str]) -> list[str]:
    """``preferred`` in order, keeping those this onnxruntime offers; CPU always last."""
    offered = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in offered and p != "CPUExecutionProvider"]
    chosen.append("CPUExecutionProvider")
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
