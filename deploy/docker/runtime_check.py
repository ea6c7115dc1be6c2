"""Build-time check of a model worker's environment (detector, embedder).

    python runtime_check.py CPUExecutionProvider     # CPU images
    python runtime_check.py CUDAExecutionProvider    # GPU images

Fails (exit status 1, one line per problem) unless:
- exactly one onnxruntime distribution is installed, the one the provider needs
  (``onnxruntime`` for CPU, ``onnxruntime-gpu`` for CUDA), and its own requirements are met
  (the GPU images install it with ``--no-deps``);
- exactly one OpenCV distribution is installed, and it is the headless one;
- onnxruntime offers the expected execution provider;
- for CUDA: every library the CUDA provider links against resolves, except the driver's
  ``libcuda.so.1`` (the NVIDIA Container Toolkit mounts it at run time), and cuDNN 9 and cuFFT
  can be found (onnxruntime opens them at run time);
- insightface imports, and the bundled buffalo_sc models match their recorded sha256.

No GPU is needed: it asks what the build offers, it does not run a model on a device.
The test suite runs it against the development environment (tests/test_deploy.py).
"""

import ctypes.util
import importlib.metadata
import subprocess
import sys
from pathlib import Path

RUNTIMES = {"onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"}
OPENCVS = {
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
}
WANTED_RUNTIME = {"CPUExecutionProvider": "onnxruntime", "CUDAExecutionProvider": "onnxruntime-gpu"}


def installed() -> dict[str, str]:
    return {
        dist.metadata["Name"].lower().replace("_", "-"): dist.version
        for dist in importlib.metadata.distributions()
    }


def unmet_requirements(dist_name: str, versions: dict[str, str]) -> list[str]:
    from packaging.requirements import Requirement

    problems = []
    for text in importlib.metadata.requires(dist_name) or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = versions.get(req.name.lower().replace("_", "-"))
        if have is None:
            problems.append(f"{dist_name} needs {req}, which is not installed")
        elif not req.specifier.contains(have, prereleases=True):
            problems.append(f"{dist_name} needs {req}, found {req.name} {have}")
    return problems


def cuda_library_problems() -> list[str]:
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    provider = capi / "libonnxruntime_providers_cuda.so"
    if not provider.exists():
        return [f"{provider} is missing"]
    listing = subprocess.run(
        ["ldd", str(provider)], capture_output=True, text=True, check=False
    ).stdout
    problems = [
        f"the CUDA provider needs {line.split()[0]}, which is not found"
        for line in listing.splitlines()
        if "not found" in line and not line.strip().startswith("libcuda.so")
    ]
    for name in ("cudnn", "cufft"):
        if ctypes.util.find_library(name) is None:
            problems.append(f"lib{name} is not found (ldconfig)")
    return problems


def model_problems() -> list[str]:
    from facerec_runtime.packs import KNOWN_PACKS, verified_path

    pack = KNOWN_PACKS["buffalo_sc"]
    problems = []
    for model in (pack.detector, pack.recognizer):
        try:
            verified_path(pack, model, None)
        except Exception as exc:
            problems.append(f"bundled {model.filename}: {exc}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in WANTED_RUNTIME:
        print(f"usage: runtime_check.py {'|'.join(WANTED_RUNTIME)}", file=sys.stderr)
        return 2
    expected = argv[1]
    versions = installed()
    runtimes = sorted(name for name in versions if name in RUNTIMES)
    opencvs = sorted(name for name in versions if name in OPENCVS)
    problems = []
    if runtimes != [WANTED_RUNTIME[expected]]:
        problems.append(f"expected only {WANTED_RUNTIME[expected]}, found {runtimes}")
    if opencvs != ["opencv-python-headless"]:
        problems.append(f"expected only opencv-python-headless, found {opencvs}")
    for name in runtimes:
        problems += unmet_requirements(name, versions)

    import cv2
    import insightface
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    print(f"onnxruntime {onnxruntime.__version__} ({runtimes}), providers {providers}")
    print(f"opencv {cv2.__version__} ({opencvs}), insightface {insightface.__version__}")
    if expected not in providers:
        problems.append(f"{expected} is not offered by this onnxruntime: {providers}")
    if expected == "CUDAExecutionProvider":
        problems += cuda_library_problems()
    problems += model_problems()
    for problem in problems:
        print(f"runtime check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
