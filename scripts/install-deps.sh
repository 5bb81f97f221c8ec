#!/usr/bin/env bash
# Install everything Neutrino's build, tests and demos need on Debian 12 (bookworm):
#   * Debian packages (PostgreSQL server binaries, Open vSwitch, networking tools, ...),
#     installed only when missing; `apt-get update` runs at most once, and only when
#     something has to be installed;
#   * uv (from PyPI via pip) when it is not on PATH;
#   * the project's virtualenv (`uv sync --frozen`, falling back to `uv sync`).
# Idempotent and silent when everything is already in place.
#
# Environment knobs:
#   NEUTRINO_SKIP_APT=1       do not touch Debian packages at all
#   NEUTRINO_ALLOW_SERVICES=1 let package maintainer scripts start services (by default a
#                             temporary policy-rc.d blocks them while we install, so that a
#                             fresh VM behaves like a container: no system PostgreSQL, OVS or
#                             etcd started behind the tests' back)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="${HOME:-/root}/.local/bin:/usr/local/bin:${PATH}"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-deps: %s\n' "$*" >&2; }

# Required packages (the first column) and the command that proves each one is usable.
REQUIRED_PKGS=(
    make
    ca-certificates
    postgresql          # server binaries under /usr/lib/postgresql/*/bin
    openvswitch-switch  # data plane (its service is not started here)
    iproute2
    iputils-ping
    netcat-openbsd
    isc-dhcp-client
    busybox
    tcpdump
    procps
    util-linux          # runuser
    sudo
)
# Optional packages: installed when the configured archives have them, skipped otherwise.
OPTIONAL_PKGS=(
    etcd-server         # Debian 12 ships 3.4.x
)

SUDO=()
if [[ ${EUID} -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    fi
fi

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

has_candidate() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [[ -n "${cand}" && "${cand}" != "(none)" ]]
}

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

APT_UPDATED=0
apt_update_once() {
    if [[ ${APT_UPDATED} -eq 0 ]]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_CREATED=0
cleanup_policy_rc() {
    if [[ ${POLICY_RC_CREATED} -eq 1 ]]; then
        "${SUDO[@]}" rm -f "${POLICY_RC}"
        POLICY_RC_CREATED=0
    fi
}
trap cleanup_policy_rc EXIT

block_service_starts() {
    if [[ "${NEUTRINO_ALLOW_SERVICES:-0}" == "1" || -e ${POLICY_RC} ]]; then
        return
    fi
    printf '#!/bin/sh\n# temporary, written by neutrino scripts/install-deps.sh\nexit 101\n' \
        | "${SUDO[@]}" tee "${POLICY_RC}" >/dev/null
    "${SUDO[@]}" chmod 0755 "${POLICY_RC}"
    POLICY_RC_CREATED=1
}

apt_install() {
    local rc=0
    block_service_starts
    log "apt-get install $*"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    cleanup_policy_rc
    return "${rc}"
}

install_debian_packages() {
    if [[ "${NEUTRINO_SKIP_APT:-0}" == "1" ]]; then
        return
    fi
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        log "not a Debian system (no dpkg/apt-get): skipping system packages"
        return
    fi

    local missing=() optional=() pkg
    for pkg in "${REQUIRED_PKGS[@]}"; do
        is_installed "${pkg}" || missing+=("${pkg}")
    done
    for pkg in "${OPTIONAL_PKGS[@]}"; do
        is_installed "${pkg}" || optional+=("${pkg}")
    done
    if [[ ${#missing[@]} -eq 0 && ${#optional[@]} -eq 0 ]]; then
        return
    fi

    if [[ ${EUID} -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        log "missing Debian packages: ${missing[*]:-} ${optional[*]:-}"
        log "run this script as root (or install sudo) to install them"
        [[ ${#missing[@]} -eq 0 ]] && return
        exit 1
    fi

    # Refresh the package lists when we must install something, or when there are no
    # lists at all (fresh container) and an optional package might be available.
    if [[ ${#missing[@]} -gt 0 ]] || ! apt_lists_present; then
        apt_update_once
    fi

    local available=()
    for pkg in "${optional[@]}"; do
        if has_candidate "${pkg}"; then
            available+=("${pkg}")
        elif [[ ${APT_UPDATED} -eq 1 ]]; then
            log "note: optional package ${pkg} is not available from the configured archives; skipped"
        fi
    done

    local to_install=("${missing[@]}" "${available[@]}")
    if [[ ${#to_install[@]} -eq 0 ]]; then
        return
    fi
    if ! apt_install "${to_install[@]}"; then
        # Stale lists (a 404 on a superseded .deb) are the usual cause: refresh and retry.
        if [[ ${APT_UPDATED} -eq 0 ]]; then
            apt_update_once
            apt_install "${to_install[@]}"
        else
            exit 1
        fi
    fi
}

ensure_uv() {
    if command -v uv >/dev/null 2>&1; then
        return
    fi
    log "installing uv with pip"
    local py=python3
    command -v "${py}" >/dev/null 2>&1 || { log "python3 not found"; exit 1; }
    if ! "${py}" -m pip --version >/dev/null 2>&1; then
        if [[ ${EUID} -eq 0 || ${#SUDO[@]} -gt 0 ]] && command -v apt-get >/dev/null 2>&1; then
            apt_update_once
            apt_install python3-pip
        else
            log "pip is not available for ${py}"
            exit 1
        fi
    fi
    local pipflags=(--quiet --disable-pip-version-check --no-input)
    if [[ ${EUID} -ne 0 ]]; then
        pipflags+=(--user)
    fi
    if ! "${py}" -m pip install "${pipflags[@]}" uv >/dev/null 2>&1; then
        # Debian's python is "externally managed" (PEP 668).
        "${py}" -m pip install "${pipflags[@]}" --break-system-packages uv >/dev/null
    fi
    hash -r
    if ! command -v uv >/dev/null 2>&1; then
        log "uv was installed but is not on PATH (${PATH})"
        exit 1
    fi
}

sync_venv() {
    cd "${REPO_ROOT}"
    local err
    err="$(mktemp)"
    # --compile-bytecode: CPython 3.11 can fail with "AST constructor recursion depth mismatch"
    # when a large module (schemathesis) is first compiled deep inside pytest/hypothesis stacks;
    # compiling every module once at install time avoids compiling during the tests.
    if ! uv sync --frozen --compile-bytecode --quiet 2>"${err}"; then
        log "uv sync --frozen failed; retrying with uv sync:"
        sed 's/^/  /' "${err}" >&2 || true
        rm -f "${err}"
        uv sync --compile-bytecode --quiet
        return
    fi
    rm -f "${err}"
}

# uv trusts its bundled Mozilla roots, not the system store: behind a TLS-intercepting proxy
# whose CA is only in Debian's bundle (which pip uses), point uv at that bundle.
use_system_ca() {
    local bundle=/etc/ssl/certs/ca-certificates.crt
    if [[ -z "${SSL_CERT_FILE:-}" && -r ${bundle} ]]; then
        export SSL_CERT_FILE=${bundle}
    fi
}

install_debian_packages
use_system_ca
ensure_uv
sync_venv
