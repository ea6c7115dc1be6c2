"""The README's "First hour" section, run as written: its shell block, line by line in one
bash, against the running stack, in a folder holding the photos it names."""

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import images
from PIL import Image
from stack import Stack

ROOT = Path(__file__).resolve().parents[1]


def first_hour_commands() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## First hour\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the First hour section has no bash block"
    return block.group(1)


def team_photo() -> bytes:
    """A group photo with the enrolled person in it: the portrait set into the group."""
    group = Image.open(io.BytesIO(images.group_photo())).convert("RGB")
    person = Image.open(io.BytesIO(images.portrait())).convert("RGB")
    person = person.resize((person.width * 200 // person.height, 200))
    group.paste(person, (group.width - person.width - 10, group.height - 210))
    out = io.BytesIO()
    group.save(out, format="JPEG", quality=92)
    return out.getvalue()


def tenant_key(stack: Stack) -> str:
    """A new tenant, so that the section's gallery name starts empty as it would."""
    tenant = f"first-hour-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(
        [sys.executable, "-m", "facerec_gateway.cli", "create", "--tenant", tenant],
        env={**os.environ, "FACEREC_REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
        check=True,
    )
    key: str = json.loads(made.stdout)["key"]
    return key


def test_the_first_hour_section_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "ada1.jpg").write_bytes(images.portrait())
    (tmp_path / "ada2.jpg").write_bytes(images.variant(images.portrait(), flip=True, scale=0.9))
    (tmp_path / "team.jpg").write_bytes(team_photo())
    key = tenant_key(stack)
    commands = first_hour_commands()
    assert "export FACEREC_API_KEY=frk_..." in commands
    # The two placeholders a reader fills in: the key start.sh printed, and where the
    # repository is (the reader runs it from there; this test runs in the photos' folder).
    script = commands.replace("frk_...", key).replace('"$PWD/.venv/bin', f'"{ROOT}/.venv/bin')
    run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("FACEREC_")},
            "FACEREC_URL": stack.url,
            "COLUMNS": "120",
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "gallery staff created" in run.stdout
    assert "enrolled Ada Lovelace" in run.stdout
    assert re.search(r"Ada Lovelace\s*│\s*2\s*│", run.stdout), run.stdout  # 2 faces
    recognized = run.stdout.split("threshold", 1)[1]
    assert "Ada Lovelace" in recognized and "unknown" in recognized

    # The mistakes the section names answer as it says.
    env = {
        **os.environ,
        "FACEREC_URL": stack.url,
        "FACEREC_API_KEY": key,
        "PATH": f"{ROOT}/.venv/bin:{os.environ['PATH']}",
    }

    def facerec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["facerec", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    typo = facerec("-c", "staf", "recognize", "team.jpg")
    assert typo.returncode == 1 and "gallery 'staf' does not exist" in typo.stderr
    twice = facerec("-c", "staff", "enroll", "Ada Lovelace", "ada1.jpg")
    assert twice.returncode == 1 and "--to ID" in twice.stderr
    several = facerec("-c", "staff", "enroll", "Team", "team.jpg")
    assert several.returncode == 2 and "--largest-face" in several.stdout
