# shellcheck shell=bash
# Sourced by .ci/run (set -euo pipefail), after .ci/docker.sh: a loopback sshd that stands in for a
# Jetson board's SSH server, for the pantheon-deploy tests. Also usable by hand (as root):
#   source .ci/docker.sh; source .ci/sshd.sh; .venv/bin/pytest -q tests/test_deploy*.py
#
# What it sets up (throwaway, under $PANTHEON_CI_SSH_DIR, default /tmp/pantheon-ci-sshd):
#   - a host key and a client key pair made here (never a real key),
#   - sshd on 127.0.0.1:$PANTHEON_CI_SSH_PORT (2222): public keys only, no passwords, no PAM,
#     root by key only (PermitRootLogin prohibit-password), and `SetEnv DOCKER_HOST=...` so that
#     `docker` in an SSH session reaches the test engine of .ci/docker.sh (OpenSSH >= 8.7),
#   - sudo (installed when missing; root may `sudo -n`), and a user without sudo rights
#     ($PANTHEON_TEST_SSH_NOSUDO_USER) for the "needs sudo" tests,
#   - a known_hosts file holding the host key, for StrictHostKeyChecking=yes.
# Exports PANTHEON_TEST_SSH_HOST/PORT/USER/KEY/KNOWN_HOSTS/NOSUDO_USER and appends the sshd pid
# to "$CI_PIDS" (stopped by .ci/run on exit). Idempotent: a running sshd of this dir is reused.

_pantheon_ci_sshd() {
  local dir="${PANTHEON_CI_SSH_DIR:-/tmp/pantheon-ci-sshd}"
  local port="${PANTHEON_CI_SSH_PORT:-2222}"
  local nosudo="pantheon-nosudo"
  local log="$dir/setup.log"
  mkdir -p "$dir"
  chmod 755 "$dir"
  : >"$log"

  # 1. Packages: the SSH server and sudo (Debian), only when missing.
  local missing=()
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  command -v sudo >/dev/null 2>&1 || missing+=(sudo)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "sshd.sh: installing ${missing[*]}" >&2
    apt-get update -qq >>"$log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
      || { echo "sshd.sh: apt-get install failed, see $log" >&2; return 1; }
  fi

  # 2. Throwaway keys: the server's host key and the client's key pair.
  [ -s "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pantheon-ci-host -f "$dir/host_ed25519"
  [ -s "$dir/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pantheon-ci-client -f "$dir/client_ed25519"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
  chmod 644 "$dir/authorized_keys"  # read by sshd as the logging-in user (root or the no-sudo user)
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"

  # 3. A user without sudo rights (its key is the same authorized key).
  if ! id "$nosudo" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh "$nosudo" >>"$log" 2>&1
  fi
  usermod -p '*' "$nosudo" >>"$log" 2>&1  # no password, but not "locked" (sshd refuses locked accounts)

  # 4. The server configuration.
  {
    echo "Port $port"
    echo "ListenAddress 127.0.0.1"
    echo "HostKey $dir/host_ed25519"
    echo "PidFile $dir/sshd.pid"
    echo "AuthorizedKeysFile $dir/authorized_keys"
    echo "PubkeyAuthentication yes"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "UsePAM no"
    echo "PermitRootLogin prohibit-password"
    echo "StrictModes no"
    echo "MaxSessions 64"
    echo "MaxStartups 64:30:128"
    echo "AcceptEnv LANG LC_*"
    echo "Subsystem sftp internal-sftp"
    echo "LogLevel VERBOSE"
    if [ -n "${DOCKER_HOST:-}" ]; then echo "SetEnv DOCKER_HOST=$DOCKER_HOST"; fi
  } >"$dir/sshd_config"

  # 5. Start sshd (or reuse the one of this dir when it still runs with this config).
  mkdir -p /run/sshd
  /usr/sbin/sshd -t -f "$dir/sshd_config" >>"$log" 2>&1 || { echo "sshd.sh: bad sshd_config, see $log" >&2; return 1; }
  local pid=""
  if [ -s "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null \
     && cmp -s "$dir/sshd_config" "$dir/sshd_config.running"; then
    pid=$(cat "$dir/sshd.pid")
    echo "sshd.sh: reusing sshd $pid on 127.0.0.1:$port" >&2
  else
    if [ -s "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; sleep 0.5; fi
    /usr/sbin/sshd -f "$dir/sshd_config" -D -e >"$dir/sshd.log" 2>&1 &
    pid=$!
    cp "$dir/sshd_config" "$dir/sshd_config.running"
    if [ -n "${CI_PIDS:-}" ]; then echo "$pid" >>"$CI_PIDS"; fi
    local i
    for i in $(seq 1 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || { echo "sshd.sh: sshd exited, see $dir/sshd.log" >&2; tail -5 "$dir/sshd.log" >&2; return 1; }
      sleep 0.2
    done
    echo "sshd.sh: sshd $pid on 127.0.0.1:$port" >&2
  fi

  # 6. Check that a session logs in with the key and reaches the engine.
  local check
  check=$(ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$dir/known_hosts" \
    -o IdentitiesOnly=yes -i "$dir/client_ed25519" -p "$port" -l root 127.0.0.1 \
    'echo ok; if [ -n "${DOCKER_HOST:-}" ]; then docker version --format "{{.Server.Version}}"; fi' 2>>"$log") \
    || { echo "sshd.sh: test login failed, see $log and $dir/sshd.log" >&2; return 1; }
  echo "sshd.sh: login ok; engine in the session: $(echo "$check" | sed -n 2p)" >&2

  export PANTHEON_TEST_SSH_HOST=127.0.0.1
  export PANTHEON_TEST_SSH_PORT="$port"
  export PANTHEON_TEST_SSH_USER=root
  export PANTHEON_TEST_SSH_KEY="$dir/client_ed25519"
  export PANTHEON_TEST_SSH_KNOWN_HOSTS="$dir/known_hosts"
  export PANTHEON_TEST_SSH_NOSUDO_USER="$nosudo"
}

_pantheon_ci_sshd
unset -f _pantheon_ci_sshd
