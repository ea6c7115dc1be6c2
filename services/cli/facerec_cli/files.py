"""Finding the images under a folder and hashing them the way the server does (sha256 of the
bytes that are uploaded)."""

import hashlib
import importlib
import importlib.util
import io
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

UPLOADED_AS_IS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
# The server takes no HEIC: such photos are converted to JPEG here, when pillow-heif is there.
CONVERTED = frozenset({".heic", ".heif"})
CHUNK = 1 << 20


@cache
def heif_supported() -> bool:
    return importlib.util.find_spec("pillow_heif") is not None


def image_suffixes() -> frozenset[str]:
    return UPLOADED_AS_IS | CONVERTED if heif_supported() else UPLOADED_AS_IS


@dataclass(frozen=True)
class LocalImage:
    path: Path
    name: str  # the path relative to the ingested folder, with "/": the image's name
    sha256: str

    @property
    def converted(self) -> bool:
        return self.path.suffix.lower() in CONVERTED

    def read(self) -> bytes:
        """The bytes to upload: the file itself, or a HEIC photo as JPEG."""
        return heif_to_jpeg(self.path) if self.converted else self.path.read_bytes()


def walk(root: Path) -> tuple[list[Path], int]:
    """Image files under ``root`` in a stable order (sorted by relative path), and how many
    other files were passed over. Hidden files and folders (".name") are not looked at."""
    suffixes = image_suffixes()
    found: list[Path] = []
    ignored = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.suffix.lower() in suffixes and path.is_file():
                found.append(path)
            else:
                ignored += 1
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found, ignored


def sha256_of(path: Path) -> str:
    """Streamed, so a large file is never held whole in memory."""
    if path.suffix.lower() in CONVERTED:
        return hashlib.sha256(heif_to_jpeg(path)).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_image(root: Path, path: Path) -> LocalImage:
    return LocalImage(path, path.relative_to(root).as_posix(), sha256_of(path))


def heif_to_jpeg(path: Path) -> bytes:
    """Deterministic for one installed Pillow and libheif: the same file gives the same bytes,
    so the same hash, on every run."""
    heif = importlib.import_module("pillow_heif")
    heif.register_heif_opener()
    image_module = importlib.import_module("PIL.Image")
    out = io.BytesIO()
    with image_module.open(path) as image:
        image.convert("RGB").save(out, format="JPEG", quality=92)
    data: bytes = out.getvalue()
    return data


# The server's default limit (FACEREC_MAX_IMAGE_BYTES); checked here so that a file it would
# refuse is never uploaded.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)


def image_type(head: bytes) -> str | None:
    """JPEG, PNG, WebP or BMP by the file's first bytes, as the server decides it."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def local_problem(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """Why the server would refuse this file, found without sending it; None if it may go."""
    if path.suffix.lower() in CONVERTED:
        return None  # converted to JPEG before upload
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if size == 0:
        return "the file is empty"
    if size > max_bytes:
        return f"{size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB (not uploaded)"
    if image_type(head) is None:
        return "not a JPEG, PNG, WebP or BMP image (not uploaded)"
    return None
