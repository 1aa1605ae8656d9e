# shellcheck shell=bash
# Sourced by .ci/run (set -euo pipefail): a Docker engine of our own and the images the container
# tests build on. Also usable by hand: `source .ci/docker.sh` (as root) before `pytest -m docker`.
#
# Exports
#   DOCKER_HOST                 unix socket of a dockerd started here (vfs, no bridge, no iptables)
#   PANTHEON_TEST_BASE_IMAGE    a minimal Debian bookworm image with python3 + pip (debootstrap +
#                               `docker import`; no registry is needed), standing in for l4t-pytorch
#   PANTHEON_TEST_WHEELHOUSE    a folder holding the CPU torch wheel, offered to pip in the build
# and appends the dockerd pid to "$CI_PIDS" (stopped by .ci/run on exit).
#
# Idempotent and quick when cached: an engine already answering on the socket is reused, the base
# rootfs tarball is kept in $PANTHEON_CI_CACHE (default ~/.cache/pantheon-ci) under a key that hashes
# its recipe and the host's extra CA certificates, and the engine's data root survives between runs.

# Remove a rootfs, never following a /proc or /sys that a failed debootstrap left mounted in it.
_pantheon_rm_rootfs() {
  local m
  for m in $(awk -v r="$1" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
  rm -rf --one-file-system "$1"
}

_pantheon_ci_docker() {
  local dir="${PANTHEON_CI_DOCKER_DIR:-/tmp/pantheon-ci-docker}"
  local data="${PANTHEON_CI_DOCKER_DATA:-/var/tmp/pantheon-ci-docker}"
  local cache="${PANTHEON_CI_CACHE:-$HOME/.cache/pantheon-ci}"
  local sock="$dir/docker.sock"
  local suite=bookworm mirror="${PANTHEON_CI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  local packages="python3,python3-pip,ca-certificates"
  local image_repo="pantheon-test-base"
  local log="$dir/setup.log"
  mkdir -p "$dir" "$cache"
  : >"$log"

  # 1. Packages (Debian): the engine and debootstrap; apt-get update once, only when one is missing.
  local missing=() cmd pkg
  for cmd in dockerd:docker.io docker:docker.io debootstrap:debootstrap make:make; do
    pkg=${cmd#*:}
    command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "docker.sh: installing ${missing[*]}" >&2
    apt-get update -qq >>"$log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $(printf '%s\n' "${missing[@]}" | sort -u) >>"$log" 2>&1 \
      || { echo "docker.sh: apt-get install failed, see $log" >&2; return 1; }
  fi

  # 2. The engine, on a socket of its own (reused when it already answers).
  export DOCKER_HOST="unix://$sock"
  if ! docker version >/dev/null 2>&1; then
    mkdir -p "$data/root" "$dir/exec"
    dockerd --storage-driver=vfs --iptables=false --ip-masq=false --bridge=none \
      -H "$DOCKER_HOST" --data-root "$data/root" --exec-root "$dir/exec" \
      --pidfile "$dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 &
    local pid=$!
    if [ -n "${CI_PIDS:-}" ]; then echo "$pid" >>"$CI_PIDS"; fi
    local i
    for i in $(seq 1 120); do
      docker version >/dev/null 2>&1 && break
      kill -0 "$pid" 2>/dev/null || { echo "docker.sh: dockerd exited, see $dir/dockerd.log" >&2; tail -5 "$dir/dockerd.log" >&2; return 1; }
      sleep 0.5
    done
    docker version >/dev/null 2>&1 || { echo "docker.sh: dockerd did not answer on $sock in 60 s" >&2; return 1; }
    echo "docker.sh: dockerd $pid on $sock (data $data/root)" >&2
  else
    echo "docker.sh: reusing the engine on $sock" >&2
  fi

  # 3. The local base image: debootstrap rootfs -> tarball (cached) -> docker import.
  # The key covers the recipe and the host's extra CA certificates (copied in so that pip behind
  # a TLS-intercepting proxy works in the build as it does on the host).
  local certs=()
  if [ -d /usr/local/share/ca-certificates ]; then
    mapfile -t certs < <(find /usr/local/share/ca-certificates -name '*.crt' -type f | sort)
  fi
  local key
  key=$( { echo "v1 $suite $mirror $packages"; for c in "${certs[@]}"; do sha256sum "$c"; done; } \
         | sha256sum | cut -c1-12)
  local image="$image_repo:$suite-$key" tarball="$cache/base-$suite-$key.tar"
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    if [ ! -s "$tarball" ]; then
      echo "docker.sh: building the base rootfs with debootstrap (once; cached in $tarball)" >&2
      local rootfs
      rootfs=$(mktemp -d /var/tmp/pantheon-rootfs.XXXXXX)
      debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >>"$log" 2>&1 \
        || { echo "docker.sh: debootstrap failed, see $log" >&2; _pantheon_rm_rootfs "$rootfs"; return 1; }
      if [ "${#certs[@]}" -gt 0 ]; then
        cp "${certs[@]}" "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >>"$log" 2>&1
      fi
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* "$rootfs"/dev/*
      tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      _pantheon_rm_rootfs "$rootfs"
    fi
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change "LABEL org.pantheon.test-base=$key" \
      --change 'CMD ["/bin/bash"]' \
      "$tarball" "$image" >/dev/null
    echo "docker.sh: imported $image" >&2
  fi
  docker tag "$image" "$image_repo:$suite"
  export PANTHEON_TEST_BASE_IMAGE="$image"

  # 4. The wheelhouse: the CPU torch wheel for the base's Python (3.11), from the local wheel cache.
  local wh="$cache/wheelhouse" whl
  mkdir -p "$wh"
  if ! compgen -G "$wh/torch-*cp311*.whl" >/dev/null; then
    whl=$(compgen -G "/opt/wheels/torch-*+cpu-cp311-*.whl" | sort | tail -1 || true)
    if [ -n "$whl" ]; then
      ln "$whl" "$wh/" 2>/dev/null || cp "$whl" "$wh/"
    else
      echo "docker.sh: no CPU torch wheel in /opt/wheels; downloading one" >&2
      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
        --index-url https://download.pytorch.org/whl/cpu -d "$wh" 'torch>=2.0' >>"$log" 2>&1
    fi
  fi
  export PANTHEON_TEST_WHEELHOUSE="$wh"
  echo "docker.sh: DOCKER_HOST=$DOCKER_HOST base=$PANTHEON_TEST_BASE_IMAGE wheelhouse=$wh" >&2
}

_pantheon_ci_docker
unset -f _pantheon_ci_docker _pantheon_rm_rootfs
