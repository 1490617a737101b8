#!/usr/bin/env bash
# Installs what building and testing tl needs on a fresh Debian 12 (bookworm) machine, and
# checks what it cannot install. Idempotent: on a machine that has everything it only checks.
#
#   * LLVM 22 (llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev) from apt, for inkwell/llvm-sys.
#     .cargo/config.toml already sets LLVM_SYS_221_PREFIX=/usr/lib/llvm-22.
#   * a C compiler (build-essential) if there is none: llvm-sys and the linker need it.
#   * ptxas from the PyPI package nvidia-cuda-nvcc (`pip install --no-deps`), which validates
#     generated PTX without a GPU or a CUDA toolkit.
#   * cargo/rustc (rust-version 1.95): checked only; install with rustup.
#
# Run as root (sudo is used for apt-get when not root and sudo exists). Exports nothing.
# Prints the ptxas path it found as its last line: `ptxas: /path/to/ptxas`.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        die "apt-get not found; install these packages by hand: $*"
    fi
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        die "need root (or sudo) to install: $*"
    fi
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        "${SUDO[@]}" apt-get update
        apt_updated=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y "$@"
}

# ---- LLVM 22 -------------------------------------------------------------------------------
LLVM_PKGS=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${LLVM_PKGS[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
fi
if ! command -v llvm-config-22 >/dev/null 2>&1 || [ ${#missing[@]} -gt 0 ]; then
    say "LLVM 22 development packages missing (${missing[*]:-llvm-config-22}); installing"
    if ! apt_install "${LLVM_PKGS[@]}"; then
        die "could not install ${LLVM_PKGS[*]}.
  llvm-22-dev comes from Debian 12's bookworm-security / bookworm-updates repositories;
  make sure /etc/apt/sources.list(.d) enables them, then run 'apt-get update' and retry.
  apt-cache policy llvm-22-dev says:
$(apt-cache policy llvm-22-dev 2>&1 | sed 's/^/    /')"
    fi
    command -v llvm-config-22 >/dev/null 2>&1 \
        || die "llvm-22-dev is installed but llvm-config-22 is not on PATH"
fi
say "LLVM: $(command -v llvm-config-22) (version $(llvm-config-22 --version))"

# ---- C compiler ----------------------------------------------------------------------------
if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
    say "no C/C++ compiler found; installing build-essential"
    apt_install build-essential
fi
say "C compiler: $(command -v cc)"

# ---- ptxas (pip: nvidia-cuda-nvcc) ---------------------------------------------------------
find_ptxas() {
    python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','bin','ptxas'))" 2>/dev/null || true
}
if ! command -v python3 >/dev/null 2>&1; then
    say "python3 missing; installing python3 and python3-pip"
    apt_install python3 python3-pip
fi
PTXAS="$(find_ptxas)"
if [ -z "$PTXAS" ] || [ ! -x "$PTXAS" ]; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        say "pip missing; installing python3-pip"
        apt_install python3-pip
    fi
    say "ptxas not found; python3 -m pip install --no-deps nvidia-cuda-nvcc"
    log="$(mktemp)"
    if ! python3 -m pip install --no-deps nvidia-cuda-nvcc 2>&1 | tee "$log"; then
        if grep -q 'externally-managed-environment' "$log"; then
            say "pip refuses (externally managed environment); retrying with --break-system-packages"
            python3 -m pip install --no-deps --break-system-packages nvidia-cuda-nvcc \
                || { rm -f "$log"; die "pip install nvidia-cuda-nvcc failed"; }
        else
            rm -f "$log"
            die "pip install nvidia-cuda-nvcc failed"
        fi
    fi
    rm -f "$log"
    PTXAS="$(find_ptxas)"
fi
[ -n "$PTXAS" ] && [ -x "$PTXAS" ] \
    || die "ptxas not found after installing nvidia-cuda-nvcc (looked at '${PTXAS}')"
say "ptxas works: $("$PTXAS" --version | grep -o 'release.*' || echo 'version unknown')"

# ---- Rust ----------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found. Install Rust (1.95 or newer) with rustup:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
  then run this script again."
fi
rustc_version="$(rustc --version | awk '{print $2}')"
IFS=. read -r rmaj rmin _ <<<"$rustc_version"
if [ "$rmaj" -lt 1 ] || { [ "$rmaj" -eq 1 ] && [ "$rmin" -lt 95 ]; }; then
    die "rustc $rustc_version is older than 1.95 (the workspace's rust-version); run 'rustup update stable'"
fi
say "cargo: $(command -v cargo) ($(cargo --version))"

say "everything is installed"
echo "ptxas: $PTXAS"
