#!/usr/bin/env bash
# lifeboat benchmark: lifeboat vs restic, borg, rustic and bupstash, plus
# machine floors, on the same data.  See docs/benchmarks.md.
#
#   bench/run.sh [--dataset generated|rustup|all] [--runs 3]
#                [--tools lifeboat,restic,borg,rustic,bupstash]
#                [--scratch /tmp/lifeboat-bench] [--no-install] [--no-build]
#                [--no-floors] [--timeout SECONDS]
#
# Environment:
#   LIFEBOAT_BIN      lifeboat binary (default: <repo>/target/release/lifeboat,
#                     built with `cargo build --release -p lifeboat-cli` if missing)
#   BENCH_GEN_SCALE   tiny|small|full size of the generated dataset (default full, ~1.5 GB)
#   BENCH_GEN_SEED    seed of the generated dataset (default 42)
#   BENCH_DATA_DIR    where the generated dataset is kept between runs
#                     (default /tmp/lifeboat-bench-data)
#   BENCH_RUSTUP_DIR  the rustup dataset (default ${RUSTUP_HOME:-~/.rustup}), read only
#   BENCH_SCRATCH     scratch dir for repositories and restores (default /tmp/lifeboat-bench)
#
# Markdown goes to stdout, progress to stderr, raw JSON to bench/results/.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"

DATASET=generated
RUNS=3
TOOLS=lifeboat,restic,borg,rustic,bupstash
SCRATCH="${BENCH_SCRATCH:-/tmp/lifeboat-bench}"
INSTALL=1
BUILD=1
EXTRA=()

usage() { sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
say() { echo "[run.sh] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dataset) DATASET="$2"; shift 2 ;;
    --dataset=*) DATASET="${1#*=}"; shift ;;
    --runs) RUNS="$2"; shift 2 ;;
    --runs=*) RUNS="${1#*=}"; shift ;;
    --tools) TOOLS="$2"; shift 2 ;;
    --tools=*) TOOLS="${1#*=}"; shift ;;
    --scratch) SCRATCH="$2"; shift 2 ;;
    --scratch=*) SCRATCH="${1#*=}"; shift ;;
    --timeout) EXTRA+=(--timeout "$2"); shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-floors) EXTRA+=(--no-floors); shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
case "$DATASET" in generated|rustup|all) ;; *) echo "--dataset must be generated, rustup or all" >&2; exit 2 ;; esac
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }

export PATH="$HOME/.cargo/bin:$PATH"
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
have_bin() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- installs
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  say "apt-get install -y ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}" >&2; then
    say "apt-get install failed; running apt-get update and retrying"
    $SUDO apt-get update >&2 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}" >&2 ||
      say "WARNING: could not install ${missing[*]}; tools that need them will show n/a"
  fi
}

cargo_install() {  # cargo_install CRATE BINARY
  if have_bin "$2"; then return 0; fi
  if ! have_bin cargo; then say "WARNING: no cargo; $2 will show n/a"; return 0; fi
  say "cargo install $1 --locked (takes several minutes on 2 cores)"
  cargo install "$1" --locked >&2 || say "WARNING: cargo install $1 failed; $2 will show n/a"
}

if [[ $INSTALL -eq 1 ]]; then
  pkgs=(zstd time tar findutils coreutils python3)
  has_tool restic && pkgs+=(restic)
  has_tool borg && pkgs+=(borgbackup)
  if has_tool bupstash && ! have_bin bupstash; then pkgs+=(libsodium-dev pkg-config); fi
  if has_tool rustic && ! have_bin rustic; then pkgs+=(pkg-config); fi
  apt_install "${pkgs[@]}"
  has_tool rustic && cargo_install rustic-rs rustic
  has_tool bupstash && cargo_install bupstash bupstash
fi
for b in zstd tar find cp du python3; do
  have_bin "$b" || { echo "required program $b is missing" >&2; exit 1; }
done

# ---------------------------------------------------------------- lifeboat
if [[ -n "${LIFEBOAT_BIN:-}" ]]; then
  LB="$LIFEBOAT_BIN"
else
  LB="$REPO_ROOT/target/release/lifeboat"
  if has_tool lifeboat && [[ ! -x "$LB" && $BUILD -eq 1 ]]; then
    say "building lifeboat: cargo build --release -p lifeboat-cli"
    (cd "$REPO_ROOT" && cargo build --release -p lifeboat-cli >&2) ||
      say "WARNING: lifeboat build failed; lifeboat will show n/a"
  fi
fi
[[ -x "$LB" ]] || say "lifeboat binary $LB not found: lifeboat column will be n/a"

# ---------------------------------------------------------------- datasets
DS_ARGS=()
if [[ "$DATASET" == generated || "$DATASET" == all ]]; then
  scale="${BENCH_GEN_SCALE:-full}"
  seed="${BENCH_GEN_SEED:-42}"
  gen_dir="${BENCH_DATA_DIR:-/tmp/lifeboat-bench-data}/generated-$scale-s$seed"
  mkdir -p "$(dirname "$gen_dir")"
  python3 "$BENCH_DIR/gen_dataset.py" "$gen_dir" --scale "$scale" --seed "$seed"
  DS_ARGS+=(--dataset "generated=$gen_dir")
fi
if [[ "$DATASET" == rustup || "$DATASET" == all ]]; then
  rdir="${BENCH_RUSTUP_DIR:-${RUSTUP_HOME:-$HOME/.rustup}}"
  [[ -d "$rdir" ]] || { echo "rustup dataset $rdir does not exist" >&2; exit 1; }
  DS_ARGS+=(--dataset "rustup=$rdir")
fi

exec python3 "$BENCH_DIR/bench.py" "${DS_ARGS[@]}" --runs "$RUNS" --tools "$TOOLS" \
  --scratch "$SCRATCH" --results-dir "$BENCH_DIR/results" --repo-root "$REPO_ROOT" \
  --lifeboat-bin "$LB" ${EXTRA[@]+"${EXTRA[@]}"}
