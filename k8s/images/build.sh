#!/usr/bin/env bash
# Build the kubeloop images offline: the base image (debootstrap, only when it is the
# project's own base and missing), the wheelhouse (dependencies cached between runs, the
# project's wheel rebuilt every time), then the component and serving images, tagged with
# the package version. Needs a running Docker daemon. Settings (environment):
#   BASE_IMAGE       base of both images (default: the debootstrap base below; with a
#                    registry, e.g. python:3.11-slim-bookworm, which `docker build` pulls)
#   LOCAL_BASE       name of the base this script builds with debootstrap when absent
#   DEBIAN_MIRROR    mirror for debootstrap
#   WHEELHOUSE       folder of cached dependency wheels (default build/wheelhouse)
#   TORCH            torch requirement put in the wheelhouse (default torch==2.13.0: the
#                    CPU build that lies on these machines; see README.md)
#   TORCH_INDEX_URL  extra index for torch (the CUDA variant: a CUDA wheel index)
#   VARIANT          cpu | cuda (the tag suffix of a non-cpu variant: 0.1.0-cuda)
#   PYTHON           interpreter with kubeloop installed (default .venv/bin/python)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
LOCAL_BASE=${LOCAL_BASE:-kubeloop-base:bookworm-py3.11}
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WHEELHOUSE=${WHEELHOUSE:-$ROOT/build/wheelhouse}
TORCH=${TORCH:-torch==2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
VARIANT=${VARIANT:-cpu}

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }

case "$VARIANT" in cpu | cuda) ;; *) die "VARIANT=$VARIANT: expected cpu or cuda" ;; esac
if [[ $VARIANT == cuda && ( -z $TORCH_INDEX_URL || $TORCH != *+cu* ) ]]; then
    die "VARIANT=cuda needs TORCH=torch==<version>+cu<NNN> and TORCH_INDEX_URL=<its wheel index>"
fi
[[ -x $PYTHON ]] || die "PYTHON=$PYTHON: not an interpreter; run \`make venv\` first"
docker info >/dev/null 2>&1 \
    || die "no Docker daemon answers; start one (as root): dockerd >/tmp/dockerd.log 2>&1 &"

# Image names are defined once, in the package.
read -r COMPONENT_IMAGE SERVING_IMAGE < <("$PYTHON" -c '
from kubeloop.components.core.image import PLATFORM_IMAGE, SERVING_IMAGE
print(PLATFORM_IMAGE, SERVING_IMAGE)')
if [[ $VARIANT != cpu ]]; then
    COMPONENT_IMAGE+="-$VARIANT"
    SERVING_IMAGE+="-$VARIANT"
fi

build_base() {
    command -v debootstrap >/dev/null \
        || die "$BASE_IMAGE is not in the local Docker and debootstrap is not installed (apt-get install debootstrap)"
    log "building $BASE_IMAGE with debootstrap (bookworm, python3)"
    local root
    root=$(mktemp -d "$ROOT/build/rootfs.XXXXXX")
    trap 'rm -rf "$root"' RETURN
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "$DEBIAN_MIRROR" >"$ROOT/build/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see build/debootstrap.log"
    # Package caches and lists are not part of a runtime base.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    tar -C "$root" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
}

build_wheelhouse() {
    # Dependencies are resolved once per (pyproject.toml, torch) and kept: a later run with
    # the same inputs reuses them without touching the network.
    local key deps
    key=$({
        "$PYTHON" -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(p["requires-python"], *p["dependencies"])'
        echo "$TORCH $TORCH_INDEX_URL"
    } | sha256sum | cut -c1-12)
    deps=$WHEELHOUSE/deps-$key
    if [[ ! -f $deps/.complete ]]; then
        log "resolving dependencies into $deps"
        rm -rf "$deps" && mkdir -p "$deps"
        local extra=()
        [[ -n $TORCH_INDEX_URL ]] && extra=(--extra-index-url "$TORCH_INDEX_URL")
        "$PYTHON" -m pip wheel --quiet --wheel-dir "$deps" "${extra[@]}" "$TORCH" "$ROOT" \
            || die "pip wheel failed (see above)"
        rm -f "$deps"/kubeloop-*.whl
        touch "$deps/.complete"
    fi
    # Older resolutions are never used again.
    find "$WHEELHOUSE" -maxdepth 1 -name 'deps-*' ! -name "deps-$key" -exec rm -rf {} +
    # The project's wheel from the files git knows (tracked and not ignored), so stale build
    # folders and local data never end up in it.
    log "building the kubeloop wheel"
    local src
    src=$(mktemp -d "$ROOT/build/src.XXXXXX")
    git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - -c --ignore-failed-read 2>/dev/null | tar -x -C "$src"
    CONTEXT=$ROOT/build/images/context
    rm -rf "$CONTEXT" && mkdir -p "$CONTEXT/wheels/deps" "$CONTEXT/wheels/project"
    # The last commit's time as the wheel's timestamps: unchanged sources give the same
    # wheel, so Docker's build cache keeps the project layer too.
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
        "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation \
        --wheel-dir "$CONTEXT/wheels/project" "$src" || die "building the kubeloop wheel failed"
    rm -rf "$src"
    # Hard links: the context costs no copy of the wheelhouse.
    cp -al "$deps"/*.whl "$CONTEXT/wheels/deps/"
    mkdir -p "$CONTEXT/feature_repo"
    git ls-files -z --cached --others --exclude-standard feature_repo \
        | tar --null -T - -c --ignore-failed-read 2>/dev/null | tar -x -C "$CONTEXT"
}

build_image() {
    local dockerfile=$1 tag=$2
    log "building $tag"
    docker build --quiet --file "k8s/images/$dockerfile" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg WHEELHOUSE=wheels \
        --build-arg VARIANT="$VARIANT" \
        --tag "$tag" "$CONTEXT" >/dev/null || die "docker build of $tag failed"
}

mkdir -p "$ROOT/build"
# One build at a time per checkout: a second run waits instead of rewriting the wheelhouse
# and build context under the first one's feet.
exec 9>"$ROOT/build/images.lock"
flock 9
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if [[ $BASE_IMAGE == "$LOCAL_BASE" ]]; then
        build_base
    else
        log "$BASE_IMAGE is not local: docker build pulls it"
    fi
fi
build_wheelhouse
build_image component.Dockerfile "$COMPONENT_IMAGE"
build_image serving.Dockerfile "$SERVING_IMAGE"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -F -e "$COMPONENT_IMAGE" -e "$SERVING_IMAGE" >&2 || true
echo "$COMPONENT_IMAGE"
echo "$SERVING_IMAGE"
