"""Every accepted format through the real stack: the same face is found in each, its
embedding agrees with the JPEG's, and a malformed file of each format is a 4xx problem that
names the file and kills no worker."""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import images
import photo_formats as formats
import pytest
from helpers import all_results, assert_problem, done
from PIL import Image
from stack import Stack

# Cosine similarity to the JPEG's embedding (the grey JPEG's for grey files): 0.95 or more
# for every format. bench/formats.py measured the lowest on 96 photos: GIF 0.952 (its
# palette), AVIF 0.977, WebP 0.983, the rest 0.99 or more (README, "Accepted image formats").
FLOOR = 0.95


@pytest.fixture(scope="module")
def zoo() -> dict[str, bytes]:
    return formats.variants(images.portrait())


@pytest.mark.parametrize("name", sorted(formats.SUFFIX))
def test_the_same_face_is_found_and_matches_in_every_format(
    api: httpx.Client, zoo: dict[str, bytes], name: str
) -> None:
    file = f"face.{formats.SUFFIX[name]}"
    detected = done(api.post("/v1/detect", params={"wait": 30}, files={"image": (file, zoo[name])}))
    assert len(detected["faces"]) == 1, detected
    assert (detected["image"]["width"], detected["image"]["height"]) == (233, 287)
    files = {"image1": ("face.jpg", zoo[formats.reference(name)]), "image2": (file, zoo[name])}
    verified = done(api.post("/v1/verify", params={"wait": 30}, files=files))
    assert verified["similarity"] >= FLOOR, verified["similarity"]
    assert verified["same"] is True


def test_a_multi_page_tiff_is_read_by_its_first_page(api: httpx.Client) -> None:
    face = Image.open(io.BytesIO(images.portrait())).convert("RGB")
    blank = Image.new("RGB", face.size, "white")
    for pages, faces in (((face, blank), 1), ((blank, face), 0)):
        data = formats.pages(*pages, fmt="TIFF")
        result = done(
            api.post("/v1/detect", params={"wait": 30}, files={"image": ("scan.tif", data)})
        )
        assert len(result["faces"]) == faces


def test_an_animated_gif_is_read_by_its_first_frame(api: httpx.Client) -> None:
    face = Image.open(io.BytesIO(images.portrait())).convert("RGB")
    blank = Image.new("RGB", face.size, "white")
    data = formats.pages(face, blank, blank, fmt="GIF")
    result = done(api.post("/v1/detect", params={"wait": 30}, files={"image": ("a.gif", data)}))
    assert len(result["faces"]) == 1


@pytest.mark.parametrize("name", sorted(formats.BASE))
@pytest.mark.parametrize("damage", ["truncated", "zero-width", "overrun"])
def test_a_malformed_file_of_each_format_is_a_problem_naming_it(
    api: httpx.Client, zoo: dict[str, bytes], name: str, damage: str
) -> None:
    fmt = formats.BASE[name]
    bad = {
        "truncated": formats.truncated(zoo[name]),
        "zero-width": formats.zero_width(zoo[name], fmt),
        "overrun": formats.overrun(zoo[name], fmt),
    }[damage]
    file = f"broken-{damage}.{formats.SUFFIX[name]}"
    response = api.post("/v1/detect", params={"wait": 30}, files={"image": (file, bad)})
    body = assert_problem(response, 422, "image-undecodable")
    assert file in body["detail"], body


def test_the_refusal_of_an_unknown_type_lists_the_accepted_formats(api: httpx.Client) -> None:
    pdf = b"%PDF-1.7\n" + b"\0" * 200
    response = api.post("/v1/detect", files={"image": ("scan.pdf", pdf)})
    detail = assert_problem(response, 415, "unsupported-image-type")["detail"]
    for listed in ("JPEG", "PNG", "WebP", "BMP", "GIF", "TIFF", "HEIC/HEIF", "AVIF"):
        assert listed in detail


def test_ingest_sends_every_format_as_it_is_and_finds_the_face_in_each(
    api: httpx.Client, stack: Stack, zoo: dict[str, bytes], tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    for name, data in zoo.items():
        (root / f"{name}.{formats.SUFFIX[name]}").write_bytes(data)
    run = subprocess.run(
        [sys.executable, "-m", "facerec_cli", "-c", "formats", "--json", "ingest", str(root)],
        env={
            **os.environ,
            "FACEREC_URL": stack.url,
            "FACEREC_API_KEY": stack.admin_key,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert (summary["uploaded"], summary["refused"], summary["failed"]) == (len(zoo), [], [])
    results = {r["name"]: r for r in all_results(api, "formats", summary["batch_id"])}
    for name, data in zoo.items():
        result = results[f"{name}.{formats.SUFFIX[name]}"]
        assert result["sha256"] == hashlib.sha256(data).hexdigest()  # the file, unconverted
        assert len(result["faces"]) == 1, (name, result)


def test_no_worker_died_of_the_malformed_files(api: httpx.Client, stack: Stack) -> None:
    # Runs after the tests above in this module (pytest keeps file order).
    assert all(stack.alive().values()), stack.alive()
    result = done(
        api.post("/v1/detect", params={"wait": 30}, files={"image": ("f.jpg", images.portrait())})
    )
    assert len(result["faces"]) == 1
