"""Schemathesis, a property-based API tester written elsewhere, against the running stack:
it reads /openapi.json and nothing else, runs every check in the examples, coverage,
fuzzing and stateful phases, and must report no failure. The allow-list is
tests/schemathesis.toml, one reason per entry.

Three runs, each with a key of its own tenant whose rate limit is lifted: the whole API but
key management and tenant erasure, then key management with a key the tester may revoke,
then tenant erasure, so that it never locks itself out of a run halfway.

The seed is fixed, so a run is repeatable; a longer run with a fresh seed is
``FACEREC_FUZZ_SEED=random FACEREC_FUZZ_EXAMPLES=200 scripts/test.sh tests/test_schemathesis.py``.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli
from stack import Stack

CONFIG = Path(__file__).with_name("schemathesis.toml")
TESTER = Path(sys.executable).with_name("st")
# Operations that would end the tester's own access.
ACCESS = "^/v1/(keys|tenant)"
ALL_PHASES = "examples,coverage,fuzzing,stateful"
STATELESS = "examples,coverage,fuzzing"


def seed() -> int:
    chosen = os.environ.get("FACEREC_FUZZ_SEED", "20261130")
    return random.SystemRandom().randrange(2**32) if chosen == "random" else int(chosen)


def examples() -> int:
    return int(os.environ.get("FACEREC_FUZZ_EXAMPLES", "25"))


def unlimited_key(stack: Stack, tenant: str) -> str:
    created = cli(
        stack,
        "create",
        "--tenant",
        tenant,
        "--scopes",
        "read,write,admin",
        "--rate-limit",
        "1000000",
    )
    return str(created["key"])


def run_tester(
    stack: Stack,
    workdir: Path,
    key: str,
    *selection: str,
    phases: str = ALL_PHASES,
    config: Path = CONFIG,
) -> subprocess.CompletedProcess[str]:
    run_seed = seed()
    command = [
        str(TESTER),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{stack.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        phases,
        "--seed",
        str(run_seed),
        "--max-examples",
        str(examples()),
        "--workers",
        "1",  # Python 3.11's ast.parse is not thread-safe, and hypothesis calls it
        "--request-timeout",
        "60",
        "--header",
        f"X-API-Key: {key}",
        *selection,
    ]
    print(f"schemathesis seed {run_seed}")
    # In its own folder: the tester keeps a cache (.schemathesis/) where it runs.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=1800, check=False, cwd=workdir
    )


def report(outcome: subprocess.CompletedProcess[str]) -> str:
    # The failures section and the summary; the whole output can run to thousands of lines.
    out = outcome.stdout
    start = out.find("=== FAILURES ===")
    return (out[start:] if start >= 0 else out[-6000:]) + outcome.stderr[-2000:]


@pytest.mark.timeout(1800)
def test_the_api_holds_against_an_outside_fuzzer(stack: Stack, tmp_path: Path) -> None:
    key = unlimited_key(stack, "schemathesis")
    outcome = run_tester(stack, tmp_path, key, "--exclude-path-regex", ACCESS)
    assert outcome.returncode == 0, report(outcome)
    assert "Tested:" in outcome.stdout, outcome.stdout[-2000:]
    assert stack.alive() == dict.fromkeys(stack.procs, True)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("operations", ["^/v1/keys", "^/v1/tenant"])
def test_key_management_and_erasure_hold_against_an_outside_fuzzer(
    stack: Stack, tmp_path: Path, operations: str
) -> None:
    # Keys first, then erasure (which revokes every key of the tenant), each with a key of
    # its own; no stateful phase: no link leads into or out of these operations.
    key = unlimited_key(stack, f"schemathesis-{operations.rsplit('/', 1)[1]}")
    selection = ("--include-path-regex", operations)
    outcome = run_tester(stack, tmp_path, key, *selection, phases=STATELESS)
    assert outcome.returncode == 0, report(outcome)
    assert "Tested:" in outcome.stdout, outcome.stdout[-2000:]
