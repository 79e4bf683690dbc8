# Shared by scripts/bootstrap and scripts/test (source it; it does nothing by itself).
# Everything here runs non-interactively: no prompts, suitable for CI=true and no stdin.

# apt_install PACKAGE...: install the Debian/Ubuntu packages that are missing,
# as root or with passwordless sudo.  Does nothing when all are installed.
apt_install() {
    local package missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
            missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null; then
            echo "scripts: root or sudo is needed to install: ${missing[*]}" >&2
            return 1
        fi
        sudo=(sudo -n)
    fi
    if ! command -v apt-get >/dev/null; then
        echo "scripts: no apt-get here; install these packages yourself: ${missing[*]}" >&2
        return 1
    fi
    echo "scripts: installing system packages: ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ensure_venv: create .venv with $PYTHON (default python3, 3.11 or newer) if missing.
ensure_venv() {
    local python="${PYTHON:-python3}"
    if [[ -x .venv/bin/python ]]; then
        return 0
    fi
    if ! command -v "$python" >/dev/null; then
        echo "scripts: $python not found; install Python 3.11 or newer" >&2
        return 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "scripts: triows needs Python 3.11 or newer; $python is $("$python" -V 2>&1)" >&2
        return 1
    fi
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        # Debian and Ubuntu ship venv's pip bootstrap in a separate package.
        apt_install python3-venv
    fi
    echo "scripts: creating .venv with $("$python" -V 2>&1)" >&2
    "$python" -m venv .venv
}

# pip_install ARGS...: pip install into .venv, quietly and without prompts.
pip_install() {
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q "$@"
}
