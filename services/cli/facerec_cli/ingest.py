"""``facerec ingest``: every image under a folder into a collection, as one batch, resumably.

1. walk the folder and hash each file (sha256 of the bytes that will be uploaded);
2. ask the server which hashes this collection has already seen and skip those files;
3. upload the rest in parts of a few files, a bounded number of requests in flight, waiting
   out ``429`` answers (the batch queues are full) and sending the same part again;
4. close the batch and follow it until every image is processed.

Interrupted at any point, the same command goes on where it stopped: files already sent are
known to the server by their hash, and the server never processes one content twice.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from facerec_cli.client import ApiError, Cancelled, Client, image_part
from facerec_cli.files import MAX_IMAGE_BYTES, LocalImage, local_image, local_problem, walk
from facerec_cli.state import IngestState, default_state_path

LOOKUP_CHUNK = 1000  # digests per lookup request (the server's limit)
MAX_PART = 50  # images per upload request (the server's limit)
POLL_S = 0.5
UPLOAD_POLL_S = 1.0
SERVER_RETRIES = 3
# Answers that no retry or smaller part can change: stop the whole ingest.
FATAL = (401, 403, 404, 409)
# Why a batch image can fail for good: sending the same bytes again gives the same answer.
PERMANENT_FAILURES = frozenset(
    {
        "image-undecodable",
        "unsupported-image-type",
        "image-too-large",
        "too-many-pixels",
        "empty-image",
        "invalid-input",
    }
)


@dataclass
class IngestOptions:
    collection: str
    concurrency: int = 4
    part_size: int = 8
    batch_name: str | None = None
    callback_url: str | None = None
    state_path: Path | None = None
    max_rate: float | None = None  # images per second; None: as fast as the server takes them
    retry_failed: bool = False  # send again files an earlier run had refused or failed for good
    max_image_bytes: int = MAX_IMAGE_BYTES  # larger files are refused here, not uploaded


@dataclass
class Problem:
    name: str
    detail: str
    sha256: str = ""
    code: str = ""


@dataclass
class IngestSummary:
    folder: str
    collection: str
    found: int = 0  # image files under the folder
    ignored: int = 0  # other files
    known: int = 0  # skipped: the collection had their content already (an earlier run)
    same_content: int = 0  # skipped: a copy of another file of this folder
    refused_before: int = 0  # skipped: an earlier run had them refused
    failed_before: int = 0  # skipped: an earlier run found they cannot be processed
    uploaded: int = 0  # accepted into the batch by this run
    duplicates: int = 0  # sent, but the server had the content already
    refused: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    batch_id: str | None = None
    batch_status: str | None = None
    batch_counts: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    server_wait_s: float = 0.0  # time spent waiting out 429 answers (summed over threads)
    interrupted: bool = False

    @property
    def remaining(self) -> int:
        handled = self.known + self.same_content + self.refused_before + self.failed_before
        handled += self.uploaded + self.duplicates
        return max(0, self.found - handled - len(self.refused))

    @property
    def low_quality(self) -> dict[str, int]:
        """Faces under the low quality bar, by reason (blurred, too_dark, ...), from the
        batch's counts; reasons with no face are left out."""
        prefix = "quality_"
        return {
            name.removeprefix(prefix): n
            for name, n in self.batch_counts.items()
            if name.startswith(prefix) and n
        }

    @property
    def images_per_s(self) -> float | None:
        """Images this run sent, per second of this run; None when it sent none (a resumed
        run that found everything done has no rate, not a rate of 0)."""
        if not self.uploaded or self.elapsed_s <= 0:
            return None
        return self.uploaded / self.elapsed_s

    def as_json(self) -> dict[str, Any]:
        counts = self.batch_counts
        return {
            "folder": self.folder,
            "collection": self.collection,
            "found": self.found,
            "ignored": self.ignored,
            "skipped_known": self.known,
            "skipped_same_content": self.same_content,
            "skipped_refused_before": self.refused_before,
            "skipped_failed_before": self.failed_before,
            "uploaded": self.uploaded,
            "duplicates": self.duplicates,
            "refused": [{"name": p.name, "detail": p.detail} for p in self.refused],
            "failed": [{"name": p.name, "detail": p.detail} for p in self.failed],
            "batch_id": self.batch_id,
            "batch_status": self.batch_status,
            "batch_counts": counts,
            "faces": counts.get("faces", 0),
            "matched": counts.get("matched", 0),
            "unassigned": counts.get("unassigned", 0),
            "low_quality": self.low_quality,
            "elapsed_s": round(self.elapsed_s, 3),
            "server_wait_s": round(self.server_wait_s, 1),
            "images_per_s": None if self.images_per_s is None else round(self.images_per_s, 2),
            "interrupted": self.interrupted,
        }


class Interrupted(Exception):
    """Ctrl-C: what was done so far; the batch stays open for the next run."""

    def __init__(self, summary: IngestSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} images/s" if speed else "    - images/s", style="cyan")


def progress_bar(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=4,
        disable=not console.is_terminal,
    )


def parts(images: list[LocalImage], size: int) -> list[list[LocalImage]]:
    size = max(1, min(size, MAX_PART))
    return [images[i : i + size] for i in range(0, len(images), size)]


class Uploader:
    """A few threads taking parts from one queue, each part one multipart request."""

    def __init__(
        self,
        client: Client,
        path: str,
        todo: Iterable[list[LocalImage]],
        threads: int,
        max_rate: float | None,
        on_sent: Callable[[int], None],
    ) -> None:
        self._client = client
        self._path = path
        self._queue: queue.SimpleQueue[list[LocalImage]] = queue.SimpleQueue()
        for part in todo:
            self._queue.put(part)
        self._rate = max_rate
        self._next_slot = 0.0
        self._on_sent = on_sent
        self._lock = threading.Lock()
        self.accepted = 0
        self.duplicates = 0
        self.refused: list[Problem] = []
        self.fatal: BaseException | None = None
        self._finished = threading.Event()
        self._running = max(1, threads)
        # Daemon threads: Ctrl-C must not wait for a request that is being answered.
        self._threads = [
            threading.Thread(target=self._work, name=f"upload-{i}", daemon=True)
            for i in range(max(1, threads))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    # An event, not Thread.join/is_alive: a join that Ctrl-C interrupts leaves is_alive()
    # wrong on Python 3.11 (the thread reads as dead while it still runs).
    def alive(self) -> bool:
        return not self._finished.is_set()

    def join(self, timeout_s: float) -> None:
        self._finished.wait(timeout_s)

    def _work(self) -> None:
        try:
            while not self._client.stop.is_set():
                try:
                    part = self._queue.get_nowait()
                except queue.Empty:
                    return
                self._pace(len(part))
                self._send(part)
        except Cancelled:
            return
        except BaseException as exc:  # reported by the main thread, never a thread traceback
            with self._lock:
                self.fatal = self.fatal or exc
            self._client.stop.set()
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._finished.set()

    def _pace(self, n: int) -> None:
        if not self._rate:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + n / self._rate
        if slot > now and self._client.stop.wait(slot - now):
            raise Cancelled

    def _send(self, part: list[LocalImage]) -> None:
        files = [image_part(image.name, image.read()) for image in part]
        for attempt in range(SERVER_RETRIES + 1):
            try:
                body = self._client.post(self._path, files=files, idempotent=True)
                break
            except ApiError as exc:
                if exc.status in FATAL:
                    raise
                if exc.status == 0 or exc.status >= 500:
                    if attempt < SERVER_RETRIES:
                        if self._client.stop.wait(2.0 * (attempt + 1)):
                            raise Cancelled from exc
                        continue
                elif len(part) > 1:  # one bad file spoils the request: send them one by one
                    for image in part:
                        self._send([image])
                    return
                with self._lock:
                    self.refused += [
                        Problem(image.name, exc.detail or exc.title, image.sha256) for image in part
                    ]
                self._on_sent(len(part))
                return
        digests = {image.name: image.sha256 for image in part}
        with self._lock:
            self.accepted += len(body.get("accepted", []))
            self.duplicates += len(body.get("duplicates", []))
            for item in body.get("refused", []):
                problem = item.get("problem") or {}
                detail = problem.get("detail") or problem.get("title") or "refused"
                name = str(item.get("name"))
                self.refused.append(Problem(name, str(detail), digests.get(name, "")))
        self._on_sent(len(part))


class Ingest:
    def __init__(self, client: Client, root: Path, options: IngestOptions, console: Console):
        self.client = client
        self.root = root
        self.options = options
        self.console = console
        self.base = f"/v1/collections/{options.collection}"
        self.summary = IngestSummary(folder=str(root), collection=options.collection)
        self.state_path = options.state_path or default_state_path(
            root, client.url, options.collection
        )
        self._process_task: TaskID | None = None

    def run(self) -> IngestSummary:
        started = time.monotonic()
        try:
            with progress_bar(self.console) as progress:
                self._run(progress)
        except KeyboardInterrupt:
            self.client.stop.set()
            self.summary.interrupted = True
            self._finish(started)
            raise Interrupted(self.summary) from None
        self._finish(started)
        return self.summary

    def _finish(self, started: float) -> None:
        self.summary.elapsed_s = time.monotonic() - started
        self.summary.server_wait_s = self.client.waited_s

    def _run(self, progress: Progress) -> None:
        options, summary = self.options, self.summary
        paths, summary.ignored = walk(self.root)
        summary.found = len(paths)
        images = self._hash(paths, progress)
        unique: dict[str, LocalImage] = {}
        for image in images:
            unique.setdefault(image.sha256, image)
        summary.same_content = len(images) - len(unique)
        state = IngestState.load(self.state_path, self.root, self.client.url, options.collection)
        if not options.retry_failed:
            refused_before = [digest for digest in unique if digest in state.refused]
            failed_before = [digest for digest in unique if digest in state.failed]
            summary.refused_before = len(refused_before)
            summary.failed_before = len(failed_before)
            for digest in {*refused_before, *failed_before}:
                del unique[digest]
        # What the server would refuse is refused here, before a byte is uploaded.
        for digest, image in list(unique.items()):
            why = local_problem(image.path, options.max_image_bytes)
            if why is not None:
                summary.refused.append(Problem(image.name, why, digest))
                state.refused[digest] = f"{image.name}: {why}"
                del unique[digest]
        known = self._lookup(list(unique))
        summary.known = len(known)
        todo = [image for digest, image in unique.items() if digest not in known]

        batch = self._batch(state.batch_id) if state.batch_id else None
        if todo:
            if batch is None or batch["status"] != "open":
                batch = self.client.post(
                    f"{self.base}/batches",
                    json={"name": options.batch_name, "callback_url": options.callback_url},
                )
            state.batch_id = batch["id"]
            state.save(self.state_path)
            summary.batch_id = batch["id"]
            try:
                self._upload(batch["id"], todo, progress)
            finally:  # also when interrupted: what was refused is known now
                refused = {p.sha256: f"{p.name}: {p.detail}" for p in summary.refused if p.sha256}
                state.refused.update(refused)
                state.save(self.state_path)
        if batch is not None:
            summary.batch_id = batch["id"]
            if batch["status"] == "open":
                batch = self.client.post(f"{self.base}/batches/{batch['id']}/close")
            self._follow(batch, progress)
        for problem in summary.failed:
            if problem.sha256 and problem.code in PERMANENT_FAILURES:
                state.failed[problem.sha256] = f"{problem.name}: {problem.detail}"
        state.batch_id = None
        state.save(self.state_path)

    def _hash(self, paths: list[Path], progress: Progress) -> list[LocalImage]:
        task = progress.add_task("hashing", total=len(paths))
        with ThreadPoolExecutor(4) as pool:
            images = []
            for image in pool.map(lambda p: local_image(self.root, p), paths):
                images.append(image)
                progress.advance(task)
        progress.update(task, visible=False)
        return images

    def _lookup(self, digests: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(digests), LOOKUP_CHUNK):
            try:
                body = self.client.json(
                    "POST",
                    f"{self.base}/images/lookup",
                    json={"sha256": digests[i : i + LOOKUP_CHUNK]},
                    idempotent=True,
                )
            except ApiError as exc:
                # A gallery that does not exist yet has no images; the batch will make it.
                if exc.status == 404 and exc.type.endswith("collection-not-found"):
                    return known
                raise
            known.update(body.get("known", []))
        return known

    def _batch(self, batch_id: str) -> dict[str, Any] | None:
        """An earlier run's batch, if the server still has it."""
        try:
            batch: dict[str, Any] = self.client.get(f"{self.base}/batches/{batch_id}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return batch

    def _upload(self, batch_id: str, todo: list[LocalImage], progress: Progress) -> None:
        upload = progress.add_task("uploading", total=len(todo))
        process = progress.add_task("processing", total=None)
        uploader = Uploader(
            self.client,
            f"{self.base}/batches/{batch_id}/images",
            parts(todo, self.options.part_size),
            self.options.concurrency,
            self.options.max_rate,
            lambda n: progress.advance(upload, n),
        )
        uploader.start()
        try:
            while uploader.alive():
                uploader.join(UPLOAD_POLL_S)
                if uploader.alive() and progress.live.is_started:
                    self._show_processing(progress, process, self._batch(batch_id))
        except KeyboardInterrupt:
            self.client.stop.set()
            uploader.join(3.0)  # let the requests in flight get their answer
            raise
        finally:
            self._take_counts(uploader)
        if uploader.fatal is not None:
            raise uploader.fatal
        self._process_task = process

    def _take_counts(self, uploader: Uploader) -> None:
        self.summary.uploaded = uploader.accepted
        self.summary.duplicates = uploader.duplicates
        # Files refused here, before upload, stay in the list beside those the server refused.
        self.summary.refused = [*self.summary.refused, *uploader.refused]

    @staticmethod
    def _show_processing(progress: Progress, task: TaskID, batch: dict[str, Any] | None) -> None:
        if batch is None:
            return
        counts = batch.get("counts", {})
        finished = int(counts.get("done", 0)) + int(counts.get("failed", 0))
        total = finished + int(counts.get("queued", 0))
        progress.update(task, completed=finished, total=max(total, finished) or None)

    def _follow(self, batch: dict[str, Any], progress: Progress) -> None:
        """Poll the closed batch until every image in it is processed."""
        task = self._process_task
        if task is None:
            task = progress.add_task("processing", total=None)
        while batch["status"] != "done":
            self._show_processing(progress, task, batch)
            time.sleep(POLL_S)
            batch = self.client.get(f"{self.base}/batches/{batch['id']}")
        self._show_processing(progress, task, batch)
        self.summary.batch_status = batch["status"]
        self.summary.batch_counts = {k: int(v) for k, v in batch.get("counts", {}).items()}
        if self.summary.batch_counts.get("failed"):
            self.summary.failed = self._failures(batch["id"])

    def _failures(self, batch_id: str) -> list[Problem]:
        failed: list[Problem] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.client.get(f"{self.base}/batches/{batch_id}/results", params=params)
            for item in page.get("results", []):
                if item.get("status") == "failed":
                    error = item.get("error") or {}
                    detail = error.get("detail") or error.get("title") or "failed"
                    failed.append(
                        Problem(
                            str(item.get("name")),
                            str(detail),
                            str(item.get("sha256") or ""),
                            str(error.get("code") or ""),
                        )
                    )
            cursor = page.get("next_cursor")
            if not cursor:
                return failed
