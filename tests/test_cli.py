"""The ``facerec`` command: offline against an in-memory fake of the batch API (walking,
hashing, 429 retries, resume after an interrupt), then as a subprocess against the real stack."""

import _thread
import email.parser
import email.policy
import hashlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict

import httpx
import images
import pytest
from facerec_cli import output
from facerec_cli.client import ApiError, Client
from facerec_cli.files import walk
from facerec_cli.ingest import Ingest, IngestOptions, Interrupted
from helpers import all_results as batch_results
from helpers import recognize
from PIL import Image
from rich.console import Console
from stack import Stack

# ---------------------------------------------------------------------------------------------
# A fake of the batch part of the API, in memory: enough of the contract to test the client.


@dataclass
class FakeBatch:
    id: str
    status: str = "open"
    results: list[dict[str, Any]] = field(default_factory=list)

    def body(self, collection: str) -> dict[str, Any]:
        faces = sum(len(r["faces"]) for r in self.results)
        counts = {
            "submitted": len(self.results),
            "queued": 0,
            "done": len(self.results),
            "failed": 0,
            "duplicates": 0,
            "faces": faces,
            "matched": 0,
            "unassigned": faces,
        }
        return {"id": self.id, "collection": collection, "status": self.status, "counts": counts}


@dataclass
class FakeGateway:
    busy: int = 0  # answer this many upload requests with 429 first
    known: dict[str, set[str]] = field(default_factory=dict)  # collection -> sha256
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    uploads: int = 0  # upload requests answered 202
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            return self.handle(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if request.headers.get("x-api-key") != "k":
            return problem(401, "unauthorized", "no valid API key")
        if parts[:2] != ["v1", "collections"] or len(parts) < 4:
            return problem(404, "not-found", f"no route {request.url.path}")
        collection, rest, method = parts[2], parts[3:], request.method
        known = self.known.setdefault(collection, set())
        if rest == ["images", "lookup"]:
            asked = json.loads(request.content)["sha256"]
            return httpx.Response(200, json={"known": [d for d in asked if d in known]})
        if rest == ["batches"] and method == "POST":
            batch = FakeBatch(uuid.uuid4().hex)
            self.batches[batch.id] = batch
            return httpx.Response(201, json=batch.body(collection))
        batch_or_none = self.batches.get(rest[1]) if len(rest) > 1 else None
        if batch_or_none is None:
            return problem(404, "not-found", "no such batch")
        batch = batch_or_none
        if rest[2:] == ["images"]:
            if self.busy:
                self.busy -= 1
                return problem(429, "overloaded", "batch queues full", {"Retry-After": "0"})
            if batch.status != "open":
                return problem(409, "batch-closed", "the batch is not open")
            return httpx.Response(202, json=self.accept(batch, collection, known, request))
        if rest[2:] == ["close"]:
            batch.status = "done"
        elif rest[2:] == ["results"]:
            return httpx.Response(200, json={"results": batch.results, "next_cursor": None})
        return httpx.Response(200, json=batch.body(collection))

    def accept(
        self, batch: FakeBatch, collection: str, known: set[str], request: httpx.Request
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {"batch_id": batch.id, "accepted": [], "duplicates": []}
        answer["refused"] = []
        for name, data in multipart_files(request):
            digest = hashlib.sha256(data).hexdigest()
            if not data.startswith(b"\xff\xd8"):
                problem_ = {"status": 415, "detail": "not JPEG, PNG, WebP or BMP"}
                answer["refused"].append({"name": name, "problem": problem_})
            elif digest in known:
                answer["duplicates"].append({"name": name, "sha256": digest})
            else:
                known.add(digest)
                answer["accepted"].append({"name": name, "sha256": digest, "job_id": digest})
                face = {"face_id": f"{collection}-{digest}-0", "unassigned": True}
                batch.results.append(
                    {"name": name, "sha256": digest, "status": "done", "faces": [face]}
                )
        self.uploads += 1
        return answer


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"type": f"/problems/{code}", "title": code, "status": status, "detail": detail}
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/problem+json", **(headers or {})},
    )


def multipart_files(request: httpx.Request) -> list[tuple[str, bytes]]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.read())
    files = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        files.append((str(part.get_filename()), payload))
    return files


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    noise = random.Random(seed).randbytes(16 * 16 * 3)
    Image.frombytes("RGB", (16, 16), noise).save(out, format="JPEG")
    return out.getvalue()


def fake_folder(root: Path, n: int) -> Path:
    for i in range(n):
        path = root / f"album{i % 3}" / f"img{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg(i))
    return root


def ingest_offline(
    gateway: FakeGateway, root: Path, state: Path, **options: Any
) -> tuple[Ingest, Client]:
    client = Client("http://fake", "k", transport=httpx.MockTransport(gateway))
    opts = IngestOptions(collection="c", state_path=state, **options)
    return Ingest(client, root, opts, Console(file=io.StringIO())), client


def test_walk_finds_images_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    for name in (
        "b/2.JPG",
        "a.png",
        "b/1.jpeg",
        "c.webp",
        "d.HEIC",
        "e.tif",
        "f.avif",
        "g.gif",
        "notes.txt",
        ".hidden.jpg",
        ".git/x.jpg",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found, ignored = walk(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.png",
        "b/1.jpeg",
        "b/2.JPG",
        "c.webp",
        "d.HEIC",
        "e.tif",
        "f.avif",
        "g.gif",
    ]
    assert ignored == 1


def test_ingest_offline_uploads_waits_out_429_and_skips_on_the_second_run(tmp_path: Path) -> None:
    root = fake_folder(tmp_path / "photos", 10)
    (root / "copy.jpg").write_bytes(jpeg(3))  # same content as img003
    (root / "broken.jpg").write_bytes(b"not an image")
    gateway = FakeGateway(busy=2)
    ingest, _ = ingest_offline(gateway, root, tmp_path / "state.json", part_size=3)
    summary = ingest.run()
    assert (summary.found, summary.same_content, summary.uploaded) == (12, 1, 10)
    assert [p.name for p in summary.refused] == ["broken.jpg"]
    assert summary.batch_counts["faces"] == 10 and summary.batch_status == "done"

    again, _ = ingest_offline(gateway, root, tmp_path / "state.json", part_size=3)
    summary = again.run()
    assert (summary.known, summary.refused_before, summary.uploaded) == (10, 1, 0)
    assert summary.batch_id is None and len(gateway.batches) == 1


def test_ingest_offline_interrupted_resumes_in_the_same_batch(tmp_path: Path) -> None:
    root = fake_folder(tmp_path / "photos", 12)
    gateway = FakeGateway()
    ingest, _ = ingest_offline(
        gateway, root, tmp_path / "state.json", part_size=2, concurrency=1, max_rate=8
    )

    # Ctrl-C, as the main thread sees it, once the second part is in: one part at a time,
    # so by then the client has recorded the first (the interrupt may land before it
    # reads the second part's answer).
    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while gateway.uploads < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(Interrupted) as stopped:
        ingest.run()
    first = stopped.value.summary
    assert first.interrupted and 2 <= first.uploaded < 12 and first.remaining > 0
    assert json.loads((tmp_path / "state.json").read_text())["batch_id"] == first.batch_id

    resumed, _ = ingest_offline(gateway, root, tmp_path / "state.json", part_size=2)
    summary = resumed.run()
    assert first.batch_id is not None and summary.batch_id == first.batch_id
    assert len(gateway.batches) == 1
    assert summary.known + summary.uploaded == 12
    results = gateway.batches[first.batch_id].results
    assert len(results) == 12 and len({r["sha256"] for r in results}) == 12


def test_client_turns_problems_into_errors() -> None:
    gateway = FakeGateway()
    client = Client("http://fake", "wrong", transport=httpx.MockTransport(gateway))
    with pytest.raises(ApiError) as error:
        client.get("/v1/collections/c/batches/x")
    assert error.value.status == 401 and error.value.detail == "no valid API key"


class Handler(BaseHTTPRequestHandler):
    """The fake gateway over real HTTP, for the command run as a subprocess."""

    gateway = FakeGateway()

    def answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request = httpx.Request(
            self.command,
            f"http://fake{self.path}",
            headers=dict(self.headers.items()),
            content=self.rfile.read(length),
        )
        response = self.gateway(request)
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("content-length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def do_DELETE(self) -> None:
        self.answer()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_url() -> Iterator[str]:
    Handler.gateway = FakeGateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def facerec(
    *args: str, url: str, key: str, home: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facerec_cli", *args],
        env=cli_env(url, key, home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env(url: str, key: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FACEREC_URL": url,
        "FACEREC_API_KEY": key,
        "XDG_CACHE_HOME": str(home / "cache"),
        "COLUMNS": "200",
    }


def test_cli_prints_the_problem_detail_and_exits_non_zero(tmp_path: Path, fake_url: str) -> None:
    root = fake_folder(tmp_path / "photos", 2)
    run = facerec("ingest", str(root), url=fake_url, key="wrong", home=tmp_path)
    assert run.returncode == 1
    assert "no valid API key" in run.stderr and "Traceback" not in run.stderr
    run = facerec("batches", "list", url="http://127.0.0.1:9", key="k", home=tmp_path)
    assert run.returncode == 1 and "Cannot reach" in run.stderr.replace("\n", " ")


def test_cli_ingest_json_against_the_fake(tmp_path: Path, fake_url: str) -> None:
    root = fake_folder(tmp_path / "photos", 5)
    run = facerec("ingest", str(root), "-c", "x", "--json", url=fake_url, key="k", home=tmp_path)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert (body["found"], body["uploaded"], body["faces"]) == (5, 5, 5)
    run = facerec("ingest", str(root), "-c", "x", url=fake_url, key="k", home=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "already in the collection" in run.stdout


# ---------------------------------------------------------------------------------------------
# Against the real stack.


def photo_folder(root: Path, n: int) -> Path:
    """``n`` distinct photos: rescaled, mirrored, recompressed copies of the test images."""
    bases = [images.group_photo(), images.portrait(), images.crowd(), images.no_face()]
    for i in range(n):
        data = images.variant(
            bases[i % len(bases)], flip=bool(i // 4 % 2), scale=1 - 0.05 * (i // 8), quality=90
        )
        path = root / f"set{i % 2}" / f"photo{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def all_results(api: httpx.Client, collection: str) -> list[dict[str, Any]]:
    batches = api.get(f"/v1/collections/{collection}/batches").json()["batches"]
    return [r for batch in batches for r in batch_results(api, collection, batch["id"])]


def faces_by_image(results: list[dict[str, Any]]) -> dict[str, int]:
    faces: dict[str, int] = {}
    for result in results:
        assert result["status"] == "done", result
        faces[result["sha256"]] = faces.get(result["sha256"], 0) + len(result["faces"])
    return faces


def test_ingest_counts_then_again_skips_everything(
    stack: Stack, api: httpx.Client, tmp_path: Path
) -> None:
    root = photo_folder(tmp_path / "photos", 6)
    (root / "sub").mkdir()
    (root / "sub" / "copy.jpg").write_bytes((root / "set0" / "photo000.jpg").read_bytes())
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.jpg").write_bytes(b"this is no image")
    (root / "portrait.png").write_bytes(
        images.encode(Image.open(io.BytesIO(images.portrait())), "PNG")
    )
    key, home = stack.admin_key, tmp_path

    run = facerec(
        "ingest", str(root), "-c", "cli-ingest", "--json", url=stack.url, key=key, home=home
    )
    assert run.returncode == 2, run.stderr  # one file refused
    first = json.loads(run.stdout)
    assert (first["found"], first["ignored"], first["skipped_same_content"]) == (9, 1, 1)
    assert (first["uploaded"], first["skipped_known"]) == (7, 0)
    assert [r["name"] for r in first["refused"]] == ["broken.jpg"]
    assert first["batch_status"] == "done" and first["batch_counts"]["done"] == 7
    results = all_results(api, "cli-ingest")
    assert sorted(r["name"] for r in results) == sorted(
        ["portrait.png", *(f"set{i % 2}/photo{i:03d}.jpg" for i in range(6))]
    )
    faces = faces_by_image(results)
    counted = [f for r in results for f in r["faces"] if not f["too_small"]]
    assert first["faces"] == len(counted) >= 10  # the batch counts no face too small to match

    run = facerec(
        "ingest", str(root), "-c", "cli-ingest", "--json", url=stack.url, key=key, home=home
    )
    assert run.returncode == 0, run.stderr
    again = json.loads(run.stdout)
    assert (again["skipped_known"], again["skipped_refused_before"], again["uploaded"]) == (7, 1, 0)
    assert again["batch_id"] is None
    assert faces_by_image(all_results(api, "cli-ingest")) == faces

    run = facerec("people", "list", "-c", "cli-ingest", "--json", url=stack.url, key=key, home=home)
    assert run.returncode == 0, run.stderr
    people = json.loads(run.stdout)
    clustered = sum(p["face_count"] for p in people["people"])
    assert clustered + people["unclustered"] == first["unassigned"]
    run = facerec("people", "list", "-c", "cli-ingest", url=stack.url, key=key, home=home)
    assert run.returncode == 0 and re.search(r"(person|people) in cli-ingest \(", run.stdout)


def test_interrupted_ingest_resumes_without_duplicate_faces(
    stack: Stack, api: httpx.Client, tmp_path: Path
) -> None:
    root = photo_folder(tmp_path / "photos", 20)
    env = cli_env(stack.url, stack.admin_key, tmp_path)
    args = ["ingest", str(root), "--concurrency", "1", "--part-size", "2", "--max-rate", "4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "facerec_cli", *args, "-c", "cli-resume", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def submitted() -> int:
        response = api.get("/v1/collections/cli-resume/batches")
        if response.status_code != 200:
            return 0
        return sum(b["counts"]["submitted"] for b in response.json()["batches"])

    deadline = time.monotonic() + 60
    while submitted() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "run it again" in stderr
    stopped = json.loads(stdout)
    assert stopped["interrupted"] and 0 < stopped["uploaded"] < 20, (stdout, stderr)

    run = facerec(
        *args, "-c", "cli-resume", "--json", url=stack.url, key=stack.admin_key, home=tmp_path
    )
    assert run.returncode == 0, run.stderr
    resumed = json.loads(run.stdout)
    assert resumed["batch_id"] == stopped["batch_id"]  # the same batch, taken up again
    assert resumed["skipped_known"] + resumed["uploaded"] + resumed["duplicates"] == 20

    clean = facerec(
        "ingest",
        str(root),
        "-c",
        "cli-clean",
        "--json",
        url=stack.url,
        key=stack.admin_key,
        home=tmp_path,
    )
    assert clean.returncode == 0, clean.stderr
    interrupted_results = all_results(api, "cli-resume")
    assert len(interrupted_results) == 20  # every image processed once, none twice
    face_ids = [f["face_id"] for r in interrupted_results for f in r["faces"]]
    assert len(face_ids) == len(set(face_ids))
    assert faces_by_image(interrupted_results) == faces_by_image(all_results(api, "cli-clean"))
    counted = sum(not f["too_small"] for r in interrupted_results for f in r["faces"])
    assert counted == json.loads(clean.stdout)["faces"]


def test_enroll_recognize_and_identities(stack: Stack, api: httpx.Client, tmp_path: Path) -> None:
    portrait = tmp_path / "yao.jpg"
    portrait.write_bytes(images.portrait())
    other = tmp_path / "yao-flipped.jpg"
    other.write_bytes(images.variant(images.portrait(), flip=True, scale=0.8))
    group = tmp_path / "group.jpg"
    group.write_bytes(images.group_photo())
    key, home = stack.admin_key, tmp_path

    run = facerec(
        "enroll",
        "Yao Ming",
        str(portrait),
        "-c",
        "cli-people",
        "--json",
        url=stack.url,
        key=key,
        home=home,
    )
    assert run.returncode == 0, run.stderr
    identity = json.loads(run.stdout)["identity_id"]

    run = facerec(
        "recognize", str(other), "-c", "cli-people", "--json", url=stack.url, key=key, home=home
    )
    assert run.returncode == 0, run.stderr
    cli = json.loads(run.stdout)
    direct = recognize(api, "cli-people", other.read_bytes())
    assert [f["identity"] for f in cli["faces"]] == [f["identity"] for f in direct["faces"]]
    assert cli["faces"][0]["identity"]["id"] == identity
    assert cli["faces"][0]["similarity"] == pytest.approx(
        direct["faces"][0]["similarity"], abs=1e-3
    )
    run = facerec("recognize", str(group), "-c", "cli-people", url=stack.url, key=key, home=home)
    assert run.returncode == 0 and "unknown" in run.stdout

    run = facerec(
        "identities", "list", "-c", "cli-people", "--json", url=stack.url, key=key, home=home
    )
    listed = json.loads(run.stdout)
    assert [(i["id"], i["name"]) for i in listed] == [(identity, "Yao Ming")]
    run = facerec(
        "identities", "delete", identity, "-c", "cli-people", url=stack.url, key=key, home=home
    )
    assert run.returncode == 0 and "1 face erased" in run.stdout
    run = facerec(
        "identities", "delete", identity, "-c", "cli-people", url=stack.url, key=key, home=home
    )
    assert run.returncode == 1 and "error" in run.stderr and "Traceback" not in run.stderr

    run = facerec(
        "recognize", str(tmp_path / "yao.jpg"), url=stack.url, key="frk_nope_nope", home=home
    )
    assert run.returncode == 1 and "FACEREC_API_KEY" in run.stderr
    (tmp_path / "fake.jpg").write_bytes(b"no image at all")
    run = facerec(
        "-c",
        "cli-people",
        "recognize",
        str(tmp_path / "fake.jpg"),
        url=stack.url,
        key=key,
        home=home,
    )
    assert run.returncode == 1 and "415" in run.stderr
    # Forgetting -c names the gallery that is missing and the way to choose one.
    run = facerec("recognize", str(other), url=stack.url, key=key, home=home)
    assert run.returncode == 1 and "'default' does not exist" in run.stderr
    assert "-c NAME" in run.stderr


def test_people_commands_name_merge_split_and_reject(
    stack: Stack, api: httpx.Client, tmp_path: Path
) -> None:
    root = tmp_path / "group"
    root.mkdir()
    for i in range(3):
        variant = images.variant(images.group_photo(), flip=i == 1, scale=0.9 + 0.1 * i)
        (root / f"g{i}.jpg").write_bytes(variant)
    key, home, c = stack.admin_key, tmp_path, "cli-people"

    def run(*args: str) -> str:
        done = facerec(*args, "-c", c, url=stack.url, key=key, home=home)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("ingest", str(root), "--json")
    people = json.loads(run("people", "list", "--json"))["people"]
    assert [p["face_count"] for p in people] == [3] * 6
    first, second, third = (p["id"] for p in people[:3])

    assert "now identity" in run("people", "name", first, "Someone")
    [identity] = api.get(f"/v1/collections/{c}/identities").json()["identities"]
    assert identity["name"] == "Someone"
    assert api.get(f"/v1/collections/{c}/identities/{identity['id']}").json()["face_count"] == 3

    run("people", "merge", second, third)
    merged = json.loads(run("people", "show", third, "--json"))
    assert len(merged["faces"]) == 6
    face = merged["faces"][0]["face_id"]
    run("people", "split", third, face)
    run("people", "cluster")
    counts = sorted(p["face_count"] for p in json.loads(run("people", "list", "--json"))["people"])
    assert counts == [1, 3, 3, 3, 5]
    [lone] = [
        p for p in json.loads(run("people", "list", "--json"))["people"] if p["face_count"] == 1
    ]
    run("people", "reject", lone["id"], face)
    counts = sorted(p["face_count"] for p in json.loads(run("people", "list", "--json"))["people"])
    assert counts == [3, 3, 3, 5]


# ---------------------------------------------------------------------------------------------
# The habits of a new user: ids to type, global options, enrolment that can be fixed.


class Where(TypedDict):
    """Where a command runs: the gateway, the key, the home folder (for its cache)."""

    url: str
    key: str
    home: Path


def on_terminal(*args: str, url: str, key: str, home: Path) -> str:
    """The command's output as a person sees it: stdout a terminal of 80 columns."""
    leader, follower = os.openpty()
    env = {**cli_env(url, key, home), "COLUMNS": "80", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "facerec_cli", *args], env=env, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the command has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks).decode(errors="replace")


def test_ids_are_short_on_a_terminal_whole_elsewhere_and_any_unique_prefix_works(
    stack: Stack, tmp_path: Path
) -> None:
    photo = tmp_path / "yao.jpg"
    photo.write_bytes(images.portrait())
    c = f"cli-ids-{uuid.uuid4().hex[:6]}"
    env: Where = {"url": stack.url, "key": stack.admin_key, "home": tmp_path}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return facerec("-c", c, *args, **env)  # global options before the command

    first = json.loads(run("--json", "enroll", "Yao Ming", str(photo)).stdout)["identity_id"]
    made = run("enroll", "Someone Else", str(photo), "--json")
    second = json.loads(made.stdout)["identity_id"]

    shown = on_terminal("-c", c, "identities", "list", **env)
    assert first[:12] in shown and first not in shown and "…" not in shown
    assert "2 identities in" in shown
    assert first in on_terminal("-c", c, "--no-trunc", "identities", "list", **env)
    piped = run("identities", "list").stdout  # a pipe: whole ids, nothing cut
    assert first in piped and second in piped and "…" not in piped

    shown_one = json.loads(run("--json", "identities", "show", first[:12]).stdout)
    assert shown_one["id"] == first and shown_one["faces"][0]["image"] == "yao.jpg"
    common = next(first[:n] for n in range(36, 0, -1) if second.startswith(first[:n]))
    ambiguous = run("identities", "show", common)
    assert ambiguous.returncode == 2 and "give more characters" in ambiguous.stderr
    assert "Traceback" not in ambiguous.stderr
    missing = run("identities", "show", "fff")
    assert missing.returncode == 2 and "no identity id starts with 'fff'" in missing.stderr


def test_enroll_checks_files_first_and_leaves_nothing_behind(stack: Stack, tmp_path: Path) -> None:
    c = f"cli-enroll-{uuid.uuid4().hex[:6]}"
    env: Where = {"url": stack.url, "key": stack.admin_key, "home": tmp_path}
    good, doc, empty = tmp_path / "a.jpg", tmp_path / "doc.pdf", tmp_path / "mask.jpg"
    good.write_bytes(images.portrait())
    doc.write_bytes(b"%PDF-1.4 not a photo")
    empty.write_bytes(images.no_face())

    def names() -> list[str]:
        run = facerec("-c", c, "--json", "identities", "list", **env)
        if run.returncode != 0:  # the gallery was never made
            return []
        return [i["name"] for i in json.loads(run.stdout)]

    mixed = facerec("-c", c, "enroll", "Mixed Bag", str(good), str(doc), **env)
    assert mixed.returncode == 2 and "doc.pdf" in mixed.stderr and names() == []
    faceless = facerec("-c", c, "enroll", "Mixed Bag", str(empty), **env)
    assert faceless.returncode == 2 and "deleted again" in faceless.stderr
    assert "no face" in faceless.stdout and names() == []

    made = facerec("-c", c, "--json", "enroll", "Yao Ming", str(good), **env)
    identity = json.loads(made.stdout)["identity_id"]
    again = facerec("-c", c, "enroll", "yao ming", str(good), **env)
    assert again.returncode == 1 and "--to" in again.stderr and names() == ["Yao Ming"]
    flipped = tmp_path / "b.jpg"
    flipped.write_bytes(images.variant(images.portrait(), flip=True))
    added = facerec(
        "-c", c, "enroll", "whatever", str(good), str(flipped), "--to", identity[:10], **env
    )
    assert added.returncode == 0, added.stderr
    assert "enrolled Yao Ming" in added.stdout and "duplicate" in added.stdout
    faces = json.loads(facerec("-c", c, "--json", "identities", "faces", identity, **env).stdout)
    assert [f["image"] for f in faces["faces"]] == ["a.jpg", "b.jpg"]
    deleted = facerec(
        "-c", c, "identities", "delete-face", identity[:8], faces["faces"][1]["face_id"][:8], **env
    )
    assert deleted.returncode == 0 and "the identity has 1 face" in deleted.stdout
    renamed = facerec("-c", c, "identities", "rename", identity[:8], "Yao", **env)
    assert renamed.returncode == 0 and names() == ["Yao"]


def test_detect_verify_galleries_batches_and_keys_commands(stack: Stack, tmp_path: Path) -> None:
    c = f"cli-cmds-{uuid.uuid4().hex[:6]}"
    env: Where = {"url": stack.url, "key": stack.admin_key, "home": tmp_path}
    yao, flipped, group = tmp_path / "y.jpg", tmp_path / "f.jpg", tmp_path / "g.jpg"
    yao.write_bytes(images.portrait())
    flipped.write_bytes(images.variant(images.portrait(), flip=True))
    group.write_bytes(images.group_photo())

    def ok(*args: str) -> str:
        run = facerec(*args, **env)
        assert run.returncode == 0, (args, run.stderr)
        return run.stdout

    assert len(json.loads(ok("--json", "detect", str(group)))["faces"]) == 6
    assert "6 faces" in ok("detect", str(group))
    assert "same person" in ok("verify", str(yao), str(flipped))
    assert "gallery " + c + " created" in ok("galleries", "create", c)
    assert c in [g["name"] for g in json.loads(ok("--json", "galleries", "list"))]
    assert "threshold 0.4" in ok("galleries", "threshold", c, "0.4")
    identity = json.loads(ok("-c", c, "--json", "enroll", "Yao", str(yao)))["identity_id"]
    assert json.loads(ok("-c", c, "--json", "verify", str(flipped), "-i", identity[:6]))["same"]

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "g.jpg").write_bytes(images.group_photo())
    ingested = json.loads(ok("-c", c, "--json", "ingest", str(folder)))
    batch = ingested["batch_id"]
    results = json.loads(ok("-c", c, "--json", "batches", "results", batch[:8]))
    assert [r["name"] for r in results] == ["g.jpg"] and len(results[0]["faces"]) == 6
    assert "1 batch in" in ok("-c", c, "batches", "list")
    cancelled = facerec("-c", c, "batches", "cancel", batch[:8], **env)
    assert cancelled.returncode == 1 and "done" in cancelled.stderr  # finished already
    assert "6 faces erased" in ok("-c", c, "batches", "delete", batch[:8])
    assert "0 batches in" in ok("-c", c, "batches", "list")
    assert "deleted gallery" in ok("galleries", "delete", c, "--yes")

    key = ok("keys", "create", "reader", "--scopes", "read", "--expires-in-days", "2").strip()
    prefix = key[:14]
    listed = json.loads(ok("--json", "keys", "list", "--prefix", prefix))
    assert [(k["prefix"], k["scopes"]) for k in listed] == [(prefix, ["read"])]
    lifetime = listed[0]["expires_at"] - listed[0]["created_at"]
    assert abs(lifetime - 2 * 86400) < 5, listed
    # Rotating makes a like key (scopes, lifetime) and revokes the old one.
    rotated = json.loads(ok("--json", "keys", "rotate", prefix))
    assert rotated["replaces"] == prefix and rotated["scopes"] == ["read"]
    assert abs(rotated["expires_at"] - rotated["created_at"] - 2 * 86400) < 5
    assert "no keys starting with" in ok("keys", "list", "--prefix", prefix)
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": key}) as old_key:
        assert old_key.get("/v1/collections").status_code == 401
    new_prefix = rotated["prefix"]
    assert "never" in ok("keys", "list", "--prefix", new_prefix)
    assert "revoked" in ok("keys", "revoke", new_prefix)
    assert "no keys starting with" in ok("keys", "list", "--prefix", new_prefix)

    letters = json.loads(ok("--json", "dead-letters", "list"))
    assert isinstance(letters, list) and all("job_id" in letter for letter in letters)
    unknown = str(uuid.uuid4())
    redriven = facerec("dead-letters", "redrive", unknown, **env)
    assert redriven.returncode == 1 and "no dead letter" in redriven.stderr, redriven.stderr


def test_ingest_remembers_hopeless_files_and_checks_them_before_upload(
    stack: Stack, api: httpx.Client, tmp_path: Path
) -> None:
    c = f"cli-hopeless-{uuid.uuid4().hex[:6]}"
    env: Where = {"url": stack.url, "key": stack.admin_key, "home": tmp_path}
    root = tmp_path / "photos"
    root.mkdir()
    (root / "ok.jpg").write_bytes(images.portrait())
    (root / "truncated.jpg").write_bytes(images.group_photo()[:3000])
    (root / "huge.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * (11 * 1024 * 1024))
    (root / "notes.png").write_bytes(b"just text, not a PNG")

    first = facerec("-c", c, "--json", "ingest", str(root), **env)
    assert first.returncode == 2, first.stderr
    body = json.loads(first.stdout)
    assert sorted(r["name"] for r in body["refused"]) == ["huge.jpg", "notes.png"]
    assert [f["name"] for f in body["failed"]] == ["truncated.jpg"]
    # Refused here: never uploaded, so the batch saw only the two that could be images.
    batches = api.get(f"/v1/collections/{c}/batches").json()["batches"]
    assert [b["counts"]["submitted"] for b in batches] == [2]

    again = facerec("-c", c, "--json", "ingest", str(root), **env)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["skipped_refused_before"], second["skipped_failed_before"]) == (2, 1)
    assert second["uploaded"] == 0 and second["images_per_s"] is None  # no rate of nothing
    table = facerec("-c", c, "ingest", str(root), **env)
    assert table.returncode == 0 and "--retry-failed" in table.stdout

    retried = facerec("-c", c, "--json", "ingest", str(root), "--retry-failed", **env)
    assert retried.returncode == 2
    assert [f["name"] for f in json.loads(retried.stdout)["failed"]] == ["truncated.jpg"]


def test_dead_letters_table_shows_job_stage_and_problem() -> None:
    letter = {
        "job_id": "019ab8f2-0000-7000-8000-000000000001",
        "stage": "embed",
        "code": "worker-crashed",
        "detail": "its worker died on it 3 times",
        "attempts": 3,
        "at": 1796080444.4,
        "image_count": 1,
    }
    console = Console(record=True, width=200)
    console.print(output.letters_table([letter]))
    text = console.export_text()
    for shown in ("019ab8f2-0000-7000-8000-000000000001", "embed", "worker-crashed", "1 dead"):
        assert shown in text, text
