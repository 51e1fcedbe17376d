"""deploy/k8s: the Kubernetes manifests, the KServe overlay and the training jobs, checked without a cluster.

Core kinds validate against Kubernetes' own schemas (kubernetes-validate, strict: unknown fields fail); the
InferenceService and the PyTorchJob against the CRD schemas vendored in deploy/k8s/schemas, made strict the way the
API server's field validation is. On top, the wiring: only real RESNET_* settings, probes on routes the app has, the
port the image's command binds, the image's non-root user, the models volume where RESNET_CHECKPOINT points, a
grace period longer than the request deadline, kustomizations that list files that exist, and training jobs that
run torchrun on the trainer's module through the image's train-and-publish.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.core.config import Settings
from app.core.metrics import ServiceMetrics
from app.main import create_app
from tests.deploy.deploy_files import (
    COMPOSE,
    REPO,
    exec_form,
    final_stage,
    load_yaml,
    only,
    read_dockerfile,
    settings_env_names,
)

K8S = REPO / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
KSERVE = K8S / "kserve" / "inferenceservice.yaml"
TRAIN_JOB = K8S / "train-job.yaml"
PYTORCHJOB = K8S / "pytorchjob.yaml"
TRAIN_SCRIPT = REPO / "deploy" / "train-and-publish.sh"
DEPLOY_DOC = REPO / "docs" / "DEPLOY.md"
# The oldest Kubernetes the manifests are written for (the preStop `sleep` action is on by default from 1.30) and
# the newest whose schemas the pinned kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", "1.37")
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): SCHEMAS / "serving.kserve.io_inferenceservices_v1beta1.json",
    ("kubeflow.org/v1", "PyTorchJob"): SCHEMAS / "kubeflow.org_pytorchjobs_v1.json",
}
KUSTOMIZE_KINDS = {"Kustomization", "Component"}
# Applied on demand (kubectl create -f / apply -f), deliberately in no kustomization.
OPT_IN = {TRAIN_JOB, PYTORCHJOB, K8S / "models-shell.yaml"}
RESNET_NAME = re.compile(r"\bRESNET_[A-Z0-9_]+\b")
GRPC_PORT = Settings.model_fields["grpc_port"].default  # the default: the tests' environment turns gRPC off
API_LABELS = {"app.kubernetes.io/name": "resnet-service", "app.kubernetes.io/component": "api"}


# ---- reading the manifests


def load_docs(path: Path) -> list[Any]:
    """YAML as kubectl reads it (YAML 1.1, anchors resolved); empty documents dropped."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def objects(paths: list[Path] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object (a mapping with apiVersion and kind) in the given files (default: all of them)."""
    out = []
    for path in paths or manifest_files():
        out += [(path, d) for d in load_docs(path) if isinstance(d, dict) and {"apiVersion", "kind"} <= d.keys()]
    return out


def one(path: Path, kind: str) -> dict[str, Any]:
    [doc] = [d for _, d in objects([path]) if d["kind"] == kind]
    return doc


def deployment() -> dict[str, Any]:
    return one(K8S / "deployment.yaml", "Deployment")


def config_data() -> dict[str, str]:
    return one(K8S / "common" / "configmap.yaml", "ConfigMap")["data"]


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs an object runs (a KServe predictor is a pod spec; a PyTorchJob has one per replica type)."""
    kind = doc["kind"]
    if kind == "Pod":
        return [doc["spec"]]
    if kind in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    if kind == "InferenceService":
        return [doc["spec"]["predictor"]]
    if kind == "PyTorchJob":
        return [r["template"]["spec"] for r in doc["spec"]["pytorchReplicaSpecs"].values()]
    return []


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in spec["containers"] if c["name"] == name]
    return found


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or the valueFrom mapping)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def mount(c: dict[str, Any], path: str) -> dict[str, Any]:
    [found] = [m for m in c.get("volumeMounts", []) if m["mountPath"] == path]
    return found


def volume(spec: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [v for v in spec["volumes"] if v["name"] == name]
    return found


@pytest.fixture
def configured(monkeypatch) -> Settings:
    """The Settings a pod gets from the ConfigMap (and nothing else from this process's environment)."""
    for name in list(os.environ):
        if name.startswith("RESNET_"):
            monkeypatch.delenv(name)
    for name, value in config_data().items():
        monkeypatch.setenv(name, value)
    return Settings()


def image_command() -> list[str]:
    return exec_form(only(final_stage(read_dockerfile()), "CMD").args)


def image_port() -> int:
    cmd = image_command()
    return int(cmd[cmd.index("--port") + 1])


# ---- schemas


def validate_core(doc: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def strict(schema: Any) -> Any:
    """A CRD schema as strict field validation applies it: an object schema that lists its properties and leaves
    other keys open (and does not preserve unknown fields) refuses unknown keys."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str], jsonschema.Validator]:
    out = {}
    for key, path in CRD_SCHEMAS.items():
        schema = strict(json.loads(path.read_text()))
        jsonschema.Draft4Validator.check_schema(schema)  # OpenAPI v3.0 schemas are draft 4 with extensions
        out[key] = jsonschema.Draft4Validator(schema)
    return out


def crd_errors(validators, doc: dict[str, Any]) -> list[str]:
    validator = validators[(doc["apiVersion"], doc["kind"])]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    # A CRD's schema leaves `metadata` to the API server: check it as the ObjectMeta of a core object.
    try:
        validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]})
    except kubernetes_validate.ValidationError as e:
        errors.append(f"metadata/{'/'.join(map(str, e.path))}: {e.message}")
    return errors


def assert_valid(validators, doc: dict[str, Any]) -> None:
    if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
        errors = crd_errors(validators, doc)
        assert not errors, "\n".join(errors)
    else:
        validate_core(doc)


def core_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in objects()
            if (d["apiVersion"], d["kind"]) not in CRD_SCHEMAS and d["kind"] not in KUSTOMIZE_KINDS]


def object_id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    meta = doc["metadata"]
    return f"{path.relative_to(K8S)}:{doc['kind']}/{meta.get('name') or meta.get('generateName')}"


@pytest.mark.parametrize("item", core_objects(), ids=object_id)
def test_core_object_is_valid_for_kubernetes_strictly(item):
    validate_core(item[1])


@pytest.mark.parametrize("path", [KSERVE, PYTORCHJOB], ids=lambda p: p.name)
def test_custom_resource_is_valid_against_its_vendored_crd_schema(crd_validators, path):
    [doc] = [d for _, d in objects([path])]
    errors = crd_errors(crd_validators, doc)
    assert not errors, "\n".join(errors)


def _deployment_container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("mutate", [
    lambda d: _deployment_container(d).update(readinesProbe=_deployment_container(d).pop("readinessProbe")),
    lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds="50"),
    lambda d: _deployment_container(d)["securityContext"].update(runAsNonroot=True),
    lambda d: d["spec"]["template"]["spec"]["volumes"][0].update(pvc={"claimName": "resnet-models"}),
], ids=["misspelt-probe", "grace-period-a-string", "misspelt-security-field", "unknown-volume-type"])
def test_kubernetes_validation_rejects_a_broken_deployment(mutate):
    doc = copy.deepcopy(deployment())
    mutate(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(doc)


def _predictor(d):
    return d["spec"]["predictor"]["containers"][0]


@pytest.mark.parametrize(("path", "mutate"), [
    # `protocolVersion` belongs to `predictor.model`: a custom container declares its protocol in PROTOCOL.
    (KSERVE, lambda d: _predictor(d).update(protocolVersion="v2")),
    (KSERVE, lambda d: d["spec"]["predictor"].update(scaleMetric="queue")),
    (KSERVE, lambda d: d["metadata"].update(annotation={})),
    (PYTORCHJOB, lambda d: d["spec"].update(nprocPerNode=4)),
    (PYTORCHJOB, lambda d: d["spec"]["pytorchReplicaSpecs"]["Worker"].update(replica=1)),
    (PYTORCHJOB, lambda d: d["spec"].update(pytorchReplicaSpec=d["spec"].pop("pytorchReplicaSpecs"))),
], ids=["isvc-protocolVersion-on-container", "isvc-bad-scale-metric", "isvc-misspelt-metadata",
        "ptj-nproc-not-a-string", "ptj-misspelt-replicas", "ptj-misspelt-replica-specs"])
def test_crd_validation_rejects_a_broken_custom_resource(crd_validators, path, mutate):
    [doc] = [copy.deepcopy(d) for _, d in objects([path])]
    mutate(doc)
    assert crd_errors(crd_validators, doc)


def test_vendored_crd_schemas_carry_their_licences():
    for name in ("kserve.LICENSE", "kubeflow-training-operator.LICENSE"):
        assert "Apache License" in (SCHEMAS / name).read_text()
    readme = (SCHEMAS / "README.md").read_text()
    for path in CRD_SCHEMAS.values():
        assert path.name in readme


# ---- the service's contract: settings, routes, ports, user


def test_every_resnet_variable_in_the_manifests_is_a_setting():
    known = settings_env_names()
    for path in sorted(K8S.rglob("*.yaml")):
        unknown = set(RESNET_NAME.findall(path.read_text())) - known
        assert not unknown, f"{path.relative_to(REPO)} uses {sorted(unknown)}, which Settings does not read"


def test_configmap_values_are_valid_settings(configured):
    data = config_data()
    assert set(data) <= settings_env_names()
    assert str(configured.checkpoint) == data["RESNET_CHECKPOINT"]


def test_api_pods_take_their_settings_from_the_configmap():
    name = one(K8S / "common" / "configmap.yaml", "ConfigMap")["metadata"]["name"]
    for _, doc in objects([K8S / "deployment.yaml", KSERVE]):
        for spec in pod_specs(doc):
            c = spec["containers"][0]
            assert {"configMapRef": {"name": name}} in c["envFrom"], doc["kind"]
            assert env_of(c)["RESNET_API_KEY"] == {"secretKeyRef": {"name": "resnet-api-key", "key": "api-key",
                                                                    "optional": True}}


def test_probes_ask_routes_the_app_serves_on_the_images_port():
    # The app's OpenAPI paths: every route it serves, whatever way FastAPI keeps included routers.
    routes = {(path, method.upper()) for path, ops in create_app().openapi()["paths"].items() for method in ops}
    port = image_port()
    for _, doc in objects([K8S / "deployment.yaml", KSERVE]):
        [spec] = pod_specs(doc)
        c = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        grpc_name = "h2c" if doc["kind"] == "InferenceService" else "grpc"  # KServe finds gRPC by the name h2c
        assert list(ports.values()) == [port, GRPC_PORT], f"{doc['kind']}: HTTP {port}, then gRPC"
        assert list(ports)[1] == grpc_name, doc["kind"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert (get["path"], "GET") in routes, f"{doc['kind']} {probe}: no GET {get['path']} in the app"
            assert ports.get(get["port"], get["port"]) == port, f"{doc['kind']} {probe} port"
        # The startup probe gives a slow model load longer than the liveness probe would.
        startup, live = c["startupProbe"], c["livenessProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
        assert startup["periodSeconds"] * startup["failureThreshold"] > live["periodSeconds"] * live["failureThreshold"]


def test_api_runs_the_images_command_like_compose():
    compose_api = load_yaml(COMPOSE)["services"]["api"]
    assert "command" not in compose_api and "entrypoint" not in compose_api  # compose runs the image's CMD
    assert any(str(p).endswith(f":{image_port()}") for p in compose_api["ports"])
    for _, doc in objects([K8S / "deployment.yaml", KSERVE]):
        c = pod_specs(doc)[0]["containers"][0]
        assert "command" not in c and c["args"] == image_command(), doc["kind"]


def test_service_and_scrape_annotation_use_the_container_port():
    service = one(K8S / "service.yaml", "Service")
    template = deployment()["spec"]["template"]
    c = template["spec"]["containers"][0]
    port, grpc = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in c["ports"]} | {image_port()}
    assert (grpc["port"], grpc["targetPort"], grpc["appProtocol"]) == (GRPC_PORT, "grpc", "kubernetes.io/h2c")
    assert grpc["targetPort"] in {p["name"] for p in c["ports"]}
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(image_port())


def image_uid_gid() -> tuple[int, int]:
    uid, _, gid = only(final_stage(read_dockerfile()), "USER").args.partition(":")
    return int(uid), int(gid or uid)


@pytest.mark.parametrize("item", [i for i in objects() if pod_specs(i[1])], ids=object_id)
def test_pods_run_as_the_images_user_on_a_read_only_root(item):
    _, doc = item
    uid, gid = image_uid_gid()
    for spec in pod_specs(doc):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid and pod["runAsGroup"] == gid
        assert spec["automountServiceAccountToken"] is False
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert {"requests", "limits"} <= c["resources"].keys(), c["name"]
        for c in spec["containers"]:
            # The one writable path the app and the trainer need (ONNX export, MPLCONFIGDIR, XDG_CACHE_HOME, torchrun).
            assert "emptyDir" in volume(spec, mount(c, "/tmp")["name"]), c["name"]


def test_image_points_its_caches_at_tmp():
    env = " ".join(i.args for i in final_stage(read_dockerfile()) if i.keyword == "ENV")
    assert "MPLCONFIGDIR=/tmp/" in env and "XDG_CACHE_HOME=/tmp/" in env


# ---- the models volume, shutdown, scaling


def models_claim() -> str:
    return one(K8S / "common" / "pvc.yaml", "PersistentVolumeClaim")["metadata"]["name"]


def test_api_serves_the_checkpoint_from_the_models_volume_read_only():
    checkpoint = Path(config_data()["RESNET_CHECKPOINT"])
    for _, doc in objects([K8S / "deployment.yaml", KSERVE]):
        [spec] = pod_specs(doc)
        m = mount(spec["containers"][0], str(checkpoint.parent))
        assert m["readOnly"] is True
        assert volume(spec, m["name"])["persistentVolumeClaim"]["claimName"] == models_claim()
        # The seed init container writes the image's default model into that same volume.
        [seed] = spec["initContainers"]
        seed_mount = seed["volumeMounts"][0]
        assert seed_mount["name"] == m["name"] and not seed_mount.get("readOnly")
        script = seed["command"][-1]
        assert f"{checkpoint.parent}/{checkpoint.name}" in script and f"{seed_mount['mountPath']}/model.pt" in script


def test_image_holds_the_default_model_the_seed_copies():
    workdir = only(final_stage(read_dockerfile()), "WORKDIR").args
    assert Path(config_data()["RESNET_CHECKPOINT"]).parent == Path(workdir) / "weights"
    assert (REPO / "weights" / "model.pt").is_file() and (REPO / "weights" / "class_indices.json").is_file()


def test_grace_period_outlasts_the_prestop_sleep_and_the_request_deadline(configured):
    for _, doc in objects([K8S / "deployment.yaml", KSERVE]):
        [spec] = pod_specs(doc)
        sleep = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep >= 5, "endpoint removal needs a few seconds to reach every proxy"
        assert spec["terminationGracePeriodSeconds"] > sleep + configured.request_timeout_s, doc["kind"]


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_thread_settings_fit_the_cpu_limit(configured):
    limit = cpu(deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    # 0 would mean os.cpu_count(), which in a container is the node's cores, not the limit.
    assert 1 <= configured.torch_threads <= limit and 1 <= configured.decode_threads <= limit
    assert configured.workers == 1


def test_hpa_pdb_and_service_cover_the_api_pods():
    d = deployment()
    assert "replicas" not in d["spec"], "the HPA owns the replica count"
    assert d["spec"]["selector"]["matchLabels"] == API_LABELS
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = d["spec"]["template"]["metadata"]["labels"]
    hpa = one(K8S / "hpa.yaml", "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"]}
    assert [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"] == ["cpu"]
    pdb = one(K8S / "pdb.yaml", "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] < hpa["minReplicas"], "a drain must leave a replica serving"


def queue_depth_patch() -> list[dict[str, Any]]:
    return load_docs(K8S / "queue-depth" / "hpa-queue-depth.yaml")[0]


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The `add` operations of RFC 6902 (all the component uses), `/-` appending to a list."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        *parents, last = op["path"].lstrip("/").split("/")
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), op["value"])
        else:
            target[last] = op["value"]
    return doc


def test_queue_depth_component_scales_on_a_gauge_the_app_exports():
    hpa = apply_json_patch(one(K8S / "hpa.yaml", "HorizontalPodAutoscaler"), queue_depth_patch())
    validate_core(hpa)
    [pods] = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    gauges = {m.name for m in ServiceMetrics().registry.collect() if m.type == "gauge"}
    assert pods["metric"]["name"] in gauges
    assert pods["target"]["type"] == "AverageValue"


# ---- kustomizations


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def reachable(root: Path) -> set[Path]:
    """The files a kustomization pulls in, following the directories (bases, components) it names."""
    k = load_docs(root / "kustomization.yaml")[0]
    out: set[Path] = set()
    for entry in k.get("resources", []) + k.get("components", []):
        path = (root / entry).resolve()
        out |= reachable(path) if path.is_dir() else {path}
    out |= {(root / p["path"]).resolve() for p in k.get("patches", []) if "path" in p}
    return out


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_files_that_exist(path):
    k = load_docs(path)[0]
    assert k["kind"] in KUSTOMIZE_KINDS and k["apiVersion"].startswith("kustomize.config.k8s.io/")
    root = path.parent
    for entry in k.get("resources", []):
        target = root / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{path}: {entry} does not exist"
        if target.is_file():
            assert target.resolve().is_relative_to(root.resolve()), f"{path}: kustomize refuses files outside"
    for entry in k.get("components", []):
        assert load_docs(root / entry / "kustomization.yaml")[0]["kind"] == "Component", entry
    for patch in k.get("patches", []):
        assert (root / patch["path"]).is_file(), patch


def test_every_manifest_is_in_a_kustomization_or_applied_on_demand():
    base, kserve = reachable(K8S), reachable(K8S / "kserve")
    components = reachable(K8S / "queue-depth")
    listed = base | kserve | components
    for path in manifest_files():
        assert path.resolve() in listed or path in OPT_IN, f"{path.relative_to(REPO)} is in no kustomization"
    assert not {p.resolve() for p in OPT_IN} & listed
    assert KSERVE.resolve() not in base and not components & base  # opt-in overlays and components
    assert (K8S / "common" / "pvc.yaml").resolve() in base & kserve


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
def test_kustomize_builds_valid_objects(crd_validators, tmp_path):
    # The component enabled, as the base's commented `components:` line says, in a copy of the tree.
    copied = tmp_path / "k8s"
    shutil.copytree(K8S, copied, ignore=shutil.ignore_patterns("schemas"))
    with (copied / "kustomization.yaml").open("a") as f:
        f.write("components:\n  - queue-depth\n")
    builds = {"base": kustomize_build(K8S), "kserve": kustomize_build(K8S / "kserve"),
              "queue-depth": kustomize_build(copied)}
    for docs in builds.values():
        for doc in docs:
            assert_valid(crd_validators, doc)
    kinds = {name: sorted(d["kind"] for d in docs) for name, docs in builds.items()}
    assert kinds["base"] == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                             "PodDisruptionBudget", "Service"]
    assert kinds["kserve"] == ["ConfigMap", "InferenceService", "PersistentVolumeClaim"]
    [hpa] = [d for d in builds["queue-depth"] if d["kind"] == "HorizontalPodAutoscaler"]
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]


# ---- training


def trainer_module() -> str:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module = scripts["resnet-train"].partition(":")[0]
    assert find_spec(module) is not None
    return module


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def run_entrypoint(c: dict[str, Any], tmp_path: Path, job_name: str) -> list[str]:
    """Run the container's command + args through the real train-and-publish, with its env, and `torchrun` and
    `resnet-train` stubbed out: returns the argv the trainer would have been started with."""
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True)
    log = tmp_path / "argv"
    for name in ("torchrun", "resnet-train"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\nfor a in "$0" "$@"; do printf "%s\\n" "$a"; done > "{log}"\n')
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("TRAIN_NPROC", "TORCHRUN_ARGS", "PUBLISH", "MODELS_DIR")}
    pod_env = {n: v if isinstance(v, str) else job_name for n, v in env_of(c).items()}  # fieldRef: the job name
    env.update(pod_env, PATH=f"{stubs}{os.pathsep}{env.get('PATH', '')}")
    assert c["command"] == ["train-and-publish"]
    args = [expand(a, pod_env) for a in c["args"]]
    result = subprocess.run(["sh", str(TRAIN_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    argv = log.read_text().splitlines()
    argv[0] = Path(argv[0]).name
    return argv


def test_image_installs_train_and_publish():
    copies = [i.args.split() for i in final_stage(read_dockerfile()) if i.keyword == "COPY"]
    assert ["deploy/train-and-publish.sh", "/usr/local/bin/train-and-publish"] in copies


def test_training_job_runs_torchrun_on_the_trainer_module_into_the_models_volume(tmp_path):
    job = one(TRAIN_JOB, "Job")
    [spec] = pod_specs(job)
    c = spec["containers"][0]
    env = env_of(c)
    assert c["image"] == deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert env["JOB_NAME"] == {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}
    argv = run_entrypoint(c, tmp_path, "resnet-train-abcde")
    assert argv[:4] == ["torchrun", "--standalone", "--nproc-per-node", env["TRAIN_NPROC"]]
    assert argv[4:6] == ["-m", trainer_module()]
    out = argv[argv.index("--out") + 1]
    assert out == f"{env['MODELS_DIR']}/runs/resnet-train-abcde" and "--resume" in argv
    assert argv[argv.index("--data") + 1] == mount(c, "/data")["mountPath"]
    models = mount(c, env["MODELS_DIR"])
    assert not models.get("readOnly")
    assert volume(spec, models["name"])["persistentVolumeClaim"]["claimName"] == models_claim()
    assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
    assert "emptyDir" in volume(spec, mount(c, "/dev/shm")["name"])


def test_pytorchjob_runs_torchrun_on_every_node_and_only_the_master_publishes(tmp_path):
    job = one(PYTORCHJOB, "PyTorchJob")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    nproc = job["spec"]["nprocPerNode"]
    publish = {}
    for role, replica in replicas.items():
        spec = replica["template"]["spec"]
        c = container(spec, "pytorch")  # the container the operator configures
        env = env_of(c)
        publish[role] = env["PUBLISH"]
        assert env["TRAIN_NPROC"] == nproc == c["resources"]["limits"]["nvidia.com/gpu"]
        assert "--standalone" not in env["TORCHRUN_ARGS"], "the rendezvous comes from the operator's PET_* env"
        assert env["JOB_NAME"] == {"fieldRef": {"fieldPath": "metadata.labels['training.kubeflow.org/job-name']"}}
        assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in c["ports"]
        models = mount(c, env["MODELS_DIR"])
        assert volume(spec, models["name"])["persistentVolumeClaim"]["claimName"] == models_claim()
        argv = run_entrypoint(c, tmp_path / role, "resnet-train-ddp-abcde")
        assert argv[0] == "torchrun" and ["-m", trainer_module()] == argv[argv.index("-m"):argv.index("-m") + 2]
        assert argv[argv.index("--nproc-per-node") + 1] == nproc
        assert argv[argv.index("--out") + 1] == f"{env['MODELS_DIR']}/runs/resnet-train-ddp-abcde"
    assert publish == {"Master": "1", "Worker": "0"}
    assert replicas["Master"]["template"]["spec"]["containers"][0]["args"] == \
        replicas["Worker"]["template"]["spec"]["containers"][0]["args"]


# ---- KServe


def test_inferenceservice_is_a_v2_custom_predictor_of_the_api_image():
    isvc = one(KSERVE, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert "model" not in predictor, "a custom predictor: our container, not a KServe serving runtime"
    c = container(predictor, "kserve-container")
    env = env_of(c)
    assert env["PROTOCOL"] == "v2"  # KServe's protocolVersion for a custom container
    assert env["RESNET_MODEL_NAME"] == "resnet"
    assert c["image"] == deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


# ---- docs


def test_deploy_doc_gives_the_commands_for_these_files():
    doc = DEPLOY_DOC.read_text()
    name = deployment()["metadata"]["name"]
    for command in ("kubectl apply -k deploy/k8s", "kubectl apply -k deploy/k8s/kserve",
                    "kubectl create -f deploy/k8s/train-job.yaml", "kubectl create -f deploy/k8s/pytorchjob.yaml",
                    f"kubectl rollout restart deployment/{name}", "/v1/model/reload", "prometheus-adapter"):
        assert command in doc, command
