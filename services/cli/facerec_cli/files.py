"""Finding the images under a folder and hashing them the way the server does (sha256 of the
bytes that are uploaded)."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

# Every photo is sent as it is on disk: the server decodes each of these itself, so the
# command and the API give the same answers for the same file.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
    }
)
CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalImage:
    path: Path
    name: str  # the path relative to the ingested folder, with "/": the image's name
    sha256: str

    def read(self) -> bytes:
        return self.path.read_bytes()


def walk(root: Path) -> tuple[list[Path], int]:
    """Image files under ``root`` in a stable order (sorted by relative path), and how many
    other files were passed over. Hidden files and folders (".name") are not looked at."""
    found: list[Path] = []
    ignored = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(path)
            else:
                ignored += 1
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found, ignored


def sha256_of(path: Path) -> str:
    """Streamed, so a large file is never held whole in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_image(root: Path, path: Path) -> LocalImage:
    return LocalImage(path, path.relative_to(root).as_posix(), sha256_of(path))


# The server's default limit (FACEREC_MAX_IMAGE_BYTES); checked here so that a file it would
# refuse is never uploaded.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
# The brands of the "ftyp" box that the server reads as AVIF or as HEIC/HEIF.
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"}
)
ACCEPTED = "JPEG, PNG, WebP, BMP, GIF, TIFF, HEIC/HEIF or AVIF"


def image_type(head: bytes) -> str | None:
    """The image type by the file's first bytes (64 are enough), as the server decides it;
    None for a file the server would refuse as no image it reads."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        end = min(int.from_bytes(head[:4], "big"), len(head))
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
        if brands & AVIF_BRANDS:
            return "AVIF"
        if brands & HEIF_BRANDS:
            return "HEIF"
    return None


def local_problem(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """Why the server would refuse this file, found without sending it; None if it may go."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if size == 0:
        return "the file is empty"
    if size > max_bytes:
        return f"{size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB (not uploaded)"
    if image_type(head) is None:
        return f"not a {ACCEPTED} image (not uploaded)"
    return None
