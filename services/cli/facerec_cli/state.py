"""What an interrupted ingest needs to go on in the same batch: a small JSON file kept outside
the photo folder. The server's dedupe by content hash is what guarantees no duplicates; this
file keeps one folder's images in one batch across restarts, and remembers the files that were
refused or could not be processed for good, so that later runs do not send them again."""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facerec"


def default_state_path(root: Path, url: str, collection: str) -> Path:
    key = "\n".join((str(root.resolve()), url.rstrip("/"), collection))
    return cache_dir() / f"ingest-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


@dataclass
class IngestState:
    root: str
    url: str
    collection: str
    batch_id: str | None = None  # the batch an interrupted run left open
    refused: dict[str, str] = field(default_factory=dict)  # sha256 -> "name: why"
    # Images the pipeline could not process and never will (undecodable, not an image):
    # not sent again unless asked (--retry-failed).
    failed: dict[str, str] = field(default_factory=dict)  # sha256 -> "name: why"

    @classmethod
    def load(cls, path: Path, root: Path, url: str, collection: str) -> "IngestState":
        fresh = cls(str(root.resolve()), url.rstrip("/"), collection)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return fresh
        if not isinstance(data, dict) or (data.get("url"), data.get("collection")) != (
            fresh.url,
            fresh.collection,
        ):
            return fresh
        batch = data.get("batch_id")
        fresh.batch_id = batch if isinstance(batch, str) else None
        for name in ("refused", "failed"):
            kept = data.get(name)
            if isinstance(kept, dict):
                setattr(fresh, name, {str(k): str(v) for k, v in kept.items()})
        return fresh

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)
