"""docker-compose.yml (+ the GPU override and the nginx config): valid against the vendored Compose specification
schema, and wired as docs/DEPLOY.md describes: api health-checked and read-only, trainer under the `train` profile
publishing into the models volume that api serves, nginx under the `lb` profile, only real RESNET_* settings."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest

from app.core.config import Settings
from tests.deploy.deploy_files import (
    COMPOSE,
    COMPOSE_GPU,
    COMPOSE_SCHEMA,
    DOCKERFILE,
    NGINX_CONF,
    REPO,
    arg_defaults,
    env_map,
    final_stage,
    healthcheck_command,
    load_yaml,
    only,
    read_dockerfile,
    settings_env_names,
    volume_mounts,
)

DEPLOY_DOC = REPO / "docs" / "DEPLOY.md"
RESNET_NAME = re.compile(r"\bRESNET_[A-Z0-9_]+\b")


@pytest.fixture(scope="module")
def compose():
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def mount_of(service, target):
    found = [m for m in volume_mounts(service) if m["target"] == target]
    assert len(found) == 1, f"expected one mount on {target}: {volume_mounts(service)}"
    return found[0]


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU], ids=lambda p: p.name)
def test_compose_file_is_valid_against_the_compose_spec(validator, path):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(load_yaml(path))]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("mutate", [
    lambda c: c["services"]["api"].update(healthcheck={"test": ["CMD", "true"], "intervall": "5s"}),
    lambda c: c["services"]["api"].update(ports="8000:8000"),
    lambda c: c["services"]["trainer"].update(profiles="train"),
    lambda c: c.update(volumes=["models"]),
], ids=["misspelt-key", "ports-not-a-list", "profiles-not-a-list", "volumes-not-a-mapping"])
def test_schema_rejects_broken_compose_files(validator, compose, mutate):
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert list(validator.iter_errors(broken))


def test_vendored_schema_is_the_compose_specification():
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    assert {"services", "volumes", "networks"} <= set(schema["properties"])
    assert "Apache License" in (REPO / "deploy" / "compose-spec.LICENSE").read_text()


def test_api_is_health_checked_on_ready_with_the_images_command(services):
    api = services["api"]
    test = api["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:] == healthcheck_command(read_dockerfile())
    assert "/health/ready" in test[-1]
    assert {"interval", "timeout", "retries", "start_period"} <= set(api["healthcheck"])


def test_api_restarts_runs_read_only_and_publishes_the_images_port(services):
    api = services["api"]
    # Not unless-stopped: the SIGHUP reload (`docker compose kill -s SIGHUP api`) marks the container manually
    # stopped, and unless-stopped would then never restart it (tests/container/test_03_restart.py).
    assert api["restart"] == "always" and services["lb"]["restart"] == "always"
    assert only(final_stage(read_dockerfile()), "STOPSIGNAL").args == "SIGTERM"
    assert api["read_only"] is True
    assert any(t == "/tmp" or t.startswith("/tmp:") for t in api["tmpfs"])
    exposed = only(final_stage(read_dockerfile()), "EXPOSE").args.split()
    assert [str(p).rsplit(":", 1)[-1] for p in api["ports"]] == exposed == ["8000", "8001"]  # HTTP, gRPC
    assert "container_name" not in api, "a fixed container name makes `--scale api=N` impossible"
    assert "profiles" not in api, "plain `docker compose up` must start the API"


def test_trainer_is_the_same_image_under_the_train_profile(services):
    api, trainer = services["api"], services["trainer"]
    assert trainer["profiles"] == ["train"]
    assert trainer["image"] == api["image"] and trainer["build"] == api["build"]
    assert trainer["entrypoint"][0] == "train-and-publish"
    dockerfile = read_dockerfile()
    assert any(i.keyword == "COPY" and i.args.endswith("/usr/local/bin/train-and-publish")
               for i in final_stage(dockerfile))
    assert trainer["healthcheck"] == {"disable": True}, "the image's HTTP health check means nothing for a trainer"
    assert trainer["restart"] == "no"


def test_trainer_reads_the_dataset_folder_and_writes_the_models_volume_api_serves(compose, services):
    api, trainer = services["api"], services["trainer"]
    entrypoint = trainer["entrypoint"]
    data = mount_of(trainer, entrypoint[entrypoint.index("--data") + 1])
    assert data["read_only"] and data["source"].startswith("${DATA_DIR")

    served = env_map(api)["RESNET_CHECKPOINT"]
    models_dir = env_map(trainer)["MODELS_DIR"]
    assert served == f"{models_dir}/model.pt", "api must serve the file train-and-publish writes"
    api_models, trainer_models = mount_of(api, models_dir), mount_of(trainer, models_dir)
    assert api_models["source"] == trainer_models["source"] in compose["volumes"], "one named volume, both services"
    assert api_models["read_only"] and not trainer_models["read_only"]


def test_image_default_model_is_the_one_the_volume_starts_with(services):
    """Settings' default checkpoint, under the image's WORKDIR, is where the models volume is mounted."""
    workdir = only(final_stage(read_dockerfile()), "WORKDIR").args
    default = Settings.model_fields["checkpoint"].default
    assert f"{workdir}/{default}" == env_map(services["api"])["RESNET_CHECKPOINT"]


def test_every_resnet_variable_in_deployment_files_is_a_setting():
    known = settings_env_names()
    for path in (COMPOSE, COMPOSE_GPU, DOCKERFILE, DEPLOY_DOC, NGINX_CONF):
        unknown = set(RESNET_NAME.findall(path.read_text())) - known
        assert not unknown, f"{path.name} uses {sorted(unknown)}, which app.core.config.Settings does not read"


def test_compose_passes_the_service_settings(services):
    names = {n for n in env_map(services["api"]) if n.startswith("RESNET_")}
    assert names <= settings_env_names()
    # Host and port belong to the image's CMD (and the port mapping), not to the container's environment.
    assert {"RESNET_CHECKPOINT", "RESNET_DEVICE", "RESNET_API_KEY", "RESNET_MAX_BATCH_SIZE"} <= names
    assert not names & {"RESNET_HOST", "RESNET_PORT"}


def test_load_balancer_profile_fronts_healthy_api_replicas(services):
    lb = services["lb"]
    assert lb["profiles"] == ["lb"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    # LB_IMAGE picks the image (Debian's nginx in the container tests); the default is the official one.
    image = re.fullmatch(r"\$\{LB_IMAGE:-nginx:(\d+)\.(\d+)-alpine\}", lb["image"])
    assert image and (int(image[1]), int(image[2])) >= (1, 22), lb["image"]
    assert mount_of(lb, "/etc/nginx/nginx.conf")["source"] == "./deploy/nginx.conf"
    assert "/health/ready" in " ".join(lb["healthcheck"]["test"])
    # Debian's package writes its compiled-in log and temp paths under /var: writable on the read-only root.
    assert {"/var/log/nginx", "/var/lib/nginx", "/tmp"} <= set(lb["tmpfs"])


def test_nginx_balances_over_every_api_replica():
    """Re-resolved at run time through a variable in proxy_pass, which nginx 1.22 (Debian 12) also supports; the
    upstream `server ... resolve` flag would need nginx 1.27.3."""
    conf = NGINX_CONF.read_text()
    exposed = only(final_stage(read_dockerfile()), "EXPOSE").args.split()[0]  # HTTP (8001 is gRPC)
    target = re.search(r"^\s*set \$(\w+) http://api:(\d+);", conf, re.M)
    assert target and target[2] == exposed, "the upstream must be every api replica on the image's port"
    assert re.search(rf"^\s*proxy_pass \${target[1]};", conf, re.M), "proxy_pass through the variable re-resolves"
    assert not re.search(r"\bresolve\b\s*(max_fails|;)|^\s*upstream\b", conf, re.M), "needs nginx >= 1.27.3"
    assert re.search(r"^\s*resolver 127\.0\.0\.11 valid=\d+s\b", conf, re.M), "Docker's DNS resolves the replicas"
    retry = re.search(r"^\s*proxy_next_upstream ([^;]+);", conf, re.M)
    assert retry and {"error", "http_503"} <= set(retry[1].split())
    assert re.search(r"^\s*add_header X-Upstream-Addr \$upstream_addr always;", conf, re.M)


def test_compose_runs_on_engine_20_10(compose):
    """Debian 12 and Ubuntu 22.04 ship Docker 20.10: no setting that needs a newer engine."""
    for name, service in compose["services"].items():
        assert "start_interval" not in service.get("healthcheck", {}), f"{name}: healthcheck.start_interval needs 25+"


def test_build_passes_the_package_sources_and_base_image_through(services):
    """The Dockerfile's build arguments, passed from the shell only when set (list form without a value)."""
    args = services["api"]["build"]["args"]
    assert isinstance(args, list)
    passed = {a.partition("=")[0]: a.partition("=")[2] if "=" in a else None for a in args}
    assert passed.pop("VARIANT") == "cpu"
    assert passed == dict.fromkeys(("PYTHON_IMAGE", "TORCH_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                    "PIP_FIND_LINKS", "PIP_TRUSTED_HOST"))
    declared = {i.args.partition("=")[0].strip() for i in read_dockerfile() if i.keyword == "ARG"}
    assert set(passed) <= declared


def test_nginx_accepts_the_largest_upload_the_service_accepts():
    size = re.search(r"^\s*client_max_body_size (\d+)([km]?);", NGINX_CONF.read_text(), re.M)
    assert size
    limit = int(size[1]) * {"": 1, "k": 1024, "m": 1024**2}[size[2]]
    assert limit >= Settings.model_fields["max_upload_bytes"].default


def test_nginx_timeout_lets_the_services_own_deadline_answer():
    read = re.search(r"^\s*proxy_read_timeout (\d+)s;", NGINX_CONF.read_text(), re.M)
    assert read and int(read[1]) > Settings.model_fields["request_timeout_s"].default


def test_gpu_override_builds_cuda_and_reserves_gpus(services):
    gpu = load_yaml(COMPOSE_GPU)["services"]
    cuda_wheels = arg_defaults(read_dockerfile())["CUDA_WHEELS"]
    for name in ("api", "trainer"):
        args = gpu[name]["build"]["args"]
        assert args["VARIANT"] == "cuda"
        # The CUDA base (a compose knob, CUDA_IMAGE) and the wheels must be on the same CUDA version.
        base = re.fullmatch(r"\$\{CUDA_IMAGE:-nvidia/cuda:(\d+)\.(\d+)\.\d+-\S+\}", args["BASE_IMAGE"])
        assert base and cuda_wheels == f"cu{base[1]}{base[2]}", (args["BASE_IMAGE"], cuda_wheels)
        assert gpu[name]["image"] != services[name]["image"], "CPU and CUDA images need different tags"
        (device,) = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert env_map(gpu["api"])["RESNET_DEVICE"] == "${RESNET_DEVICE:-cuda}"
