#!/usr/bin/env bash
# lifeboat benchmark: lifeboat vs restic, borg, rustic and bupstash, plus
# machine floors, on the same data.  See docs/benchmarks.md.
#
# S3: `bench/run.sh --s3` backs up and restores the rustup dataset through a
# local Garage server on loopback, lifeboat against restic's s3 backend (both
# to the same server, in the same run; fresh repository per run, restore with
# a cold cache), then sweeps lifeboat's --connections (2,8,32) to show time and
# peak RSS as connections grow.  Smoke test: `BENCH_GEN_SCALE=tiny
# bench/run.sh --s3 --dataset generated --runs 1`.  Needs Garage 2.5
# ($LIFEBOAT_GARAGE, default ~/.cache/lifeboat-tools/garage/bin/garage;
# installed there with cargo if missing, as .ci/run does).
#
#   bench/run.sh [--dataset generated|rustup|million|bigfile|all|everything|A,B,...]
#                [--runs 3] [--tools lifeboat,restic,borg,rustic,bupstash]
#                [--phases initial,unchanged,changed,restore,file]
#                [--scratch /tmp/lifeboat-bench] [--no-install] [--no-build]
#                [--no-floors] [--password-mode] [--timeout SECONDS]
#   bench/run.sh --lifecycle [--dataset rustup] [--snapshots 50] [--keep-last N]
#                [--runs 3] [--keep] [...]
#   bench/run.sh --s3 [--dataset rustup] [--runs 3] [--connections 2,8,32]
#                [--sweep-runs 1] [--no-sweep] [...]
#
#   --lifecycle: prune and check --read-data of lifeboat against restic on a
#   history of --snapshots backups (1% changed before each), after forget
#   --keep-last N (default snapshots/5); dataset default rustup, tools
#   lifeboat,restic.  Runs bench/lifecycle.py instead of bench/bench.py.
#
#   --s3: initial backup and full restore, lifeboat against restic, through a
#   Garage S3 server on 127.0.0.1 (started and killed by bench/s3.py, its data
#   under the scratch dir); targets backup and restore <= 0.6x restic.  Then
#   lifeboat's initial backup with each --connections value (--sweep-runs runs
#   each; --no-sweep skips it).  Dataset default rustup, tools lifeboat,restic.
#   Runs bench/s3.py instead of bench/bench.py; raw JSON to bench/results/s3-<date>.json.
#
#   all = generated,rustup; everything = generated,rustup,million,bigfile.
#   Without --tools/--phases each dataset uses its own defaults (million:
#   lifeboat,restic,bupstash and initial,unchanged; bigfile: initial only).
#
# Environment:
#   LIFEBOAT_BIN        lifeboat binary (default: <repo>/target/release/lifeboat,
#                       built with `cargo build --release -p lifeboat-cli` if missing)
#   BENCH_GEN_SCALE     tiny|small|full size of the generated dataset (default full, ~1.5 GB)
#   BENCH_GEN_SEED      seed of the generated datasets and of the 1% change (default 42)
#   BENCH_MILLION_FILES files of the million dataset (default 1000000; 500 per directory)
#   BENCH_BIGFILE_MIB   size of the bigfile dataset in MiB (default 4096)
#   BENCH_DATA_DIR      where the datasets (and the copy of the rustup dir) are kept
#                       between runs (default /tmp/lifeboat-bench-data); on a machine
#                       that pages out idle page cache (DAMON) and has no swap, a tmpfs
#                       (/dev/shm/lifeboat-bench-data) keeps million warm
#   BENCH_RUSTUP_DIR    source of the rustup dataset (default ${RUSTUP_HOME:-~/.rustup}),
#                       only ever read: it is copied once to $BENCH_DATA_DIR/rustup-copy
#   BENCH_SCRATCH       scratch dir for repositories and restores (default /tmp/lifeboat-bench)
#   LIFEBOAT_GARAGE     Garage binary for --s3 (default ~/.cache/lifeboat-tools/garage/bin/garage)
#
# Markdown goes to stdout, progress to stderr, raw JSON to bench/results/.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"

DATASET=""
RUNS=3
LIFECYCLE=0
LC_EXTRA=()
S3=0
S3_EXTRA=()
TOOLS=""
SCRATCH="${BENCH_SCRATCH:-/tmp/lifeboat-bench}"
INSTALL=1
BUILD=1
EXTRA=()

usage() { sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
say() { echo "[run.sh] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dataset|--datasets) DATASET="$2"; shift 2 ;;
    --dataset=*|--datasets=*) DATASET="${1#*=}"; shift ;;
    --runs) RUNS="$2"; shift 2 ;;
    --runs=*) RUNS="${1#*=}"; shift ;;
    --tools) TOOLS="$2"; shift 2 ;;
    --tools=*) TOOLS="${1#*=}"; shift ;;
    --phases) EXTRA+=(--phases "$2"); shift 2 ;;
    --phases=*) EXTRA+=(--phases "${1#*=}"); shift ;;
    --scratch) SCRATCH="$2"; shift 2 ;;
    --scratch=*) SCRATCH="${1#*=}"; shift ;;
    --timeout) EXTRA+=(--timeout "$2"); shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-floors) EXTRA+=(--no-floors); shift ;;
    --password-mode) EXTRA+=(--password-mode); shift ;;
    --lifecycle) LIFECYCLE=1; shift ;;
    --snapshots|--keep-last) LC_EXTRA+=("$1" "$2"); shift 2 ;;
    --snapshots=*|--keep-last=*) LC_EXTRA+=("$1"); shift ;;
    --keep) LC_EXTRA+=(--keep); shift ;;
    --s3) S3=1; shift ;;
    --connections|--sweep-runs) S3_EXTRA+=("$1" "$2"); shift 2 ;;
    --connections=*|--sweep-runs=*) S3_EXTRA+=("$1"); shift ;;
    --no-sweep) S3_EXTRA+=(--no-sweep); shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
[[ $LIFECYCLE -eq 1 && $S3 -eq 1 ]] && { echo "--lifecycle and --s3 are separate benchmarks: give one" >&2; exit 2; }
if [[ $S3 -eq 1 ]]; then
  [[ -n "$DATASET" ]] || DATASET=rustup
  [[ -n "$TOOLS" ]] || TOOLS=lifeboat,restic
  [[ " ${EXTRA[*]-} " != *" --phases "* ]] || { echo "--phases does not apply to --s3" >&2; exit 2; }
elif [[ ${#S3_EXTRA[@]} -gt 0 ]]; then
  echo "--connections, --sweep-runs and --no-sweep need --s3" >&2; exit 2
fi
if [[ $LIFECYCLE -eq 1 ]]; then
  [[ -n "$DATASET" ]] || DATASET=rustup
  [[ -n "$TOOLS" ]] || TOOLS=lifeboat,restic
  [[ " ${EXTRA[*]-} " != *" --phases "* ]] || { echo "--phases does not apply to --lifecycle" >&2; exit 2; }
elif [[ ${#LC_EXTRA[@]} -gt 0 ]]; then
  echo "--snapshots, --keep-last and --keep need --lifecycle" >&2; exit 2
fi
[[ -n "$DATASET" ]] || DATASET=generated
DATASETS=()
IFS=',' read -r -a ds_words <<<"$DATASET"
for d in "${ds_words[@]}"; do
  case "$d" in
    all) DATASETS+=(generated rustup) ;;
    everything) DATASETS+=(generated rustup million bigfile) ;;
    generated|rustup|million|bigfile) DATASETS+=("$d") ;;
    *) echo "--dataset takes generated, rustup, million, bigfile, all, everything or a comma list of them" >&2; exit 2 ;;
  esac
done
# de-duplicate, keeping the order
read -r -a DATASETS <<<"$(printf '%s\n' "${DATASETS[@]}" | awk '!seen[$0]++' | tr '\n' ' ')"
[[ ${#DATASETS[@]} -gt 0 ]] || { echo "no dataset given" >&2; exit 2; }
has_ds() { [[ " ${DATASETS[*]} " == *" $1 "* ]]; }
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }

export PATH="$HOME/.cargo/bin:$PATH"
# tools to install: the given ones, else the union of the datasets' defaults
if [[ -n "$TOOLS" ]]; then
  NEED_TOOLS="$TOOLS"
  EXTRA+=(--tools "$TOOLS")
elif has_ds generated || has_ds rustup || has_ds bigfile; then
  NEED_TOOLS=lifeboat,restic,borg,rustic,bupstash
else
  NEED_TOOLS=lifeboat,restic,bupstash
fi
has_tool() { [[ ",$NEED_TOOLS," == *",$1,"* ]]; }
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
if [[ $S3 -eq 1 ]]; then
  # the Garage the S3 tests use (.ci/run installs the same one, in the same place)
  GARAGE_ROOT="$HOME/.cache/lifeboat-tools/garage"
  export LIFEBOAT_GARAGE="${LIFEBOAT_GARAGE:-$GARAGE_ROOT/bin/garage}"
  if [[ ! -x "$LIFEBOAT_GARAGE" && $INSTALL -eq 1 ]] && have_bin cargo; then
    say "installing Garage 2.5.0: cargo install garage --version 2.5.0 --locked (about 11 minutes on 2 cores, once)"
    cargo install garage --version 2.5.0 --locked --root "$GARAGE_ROOT" >&2 ||
      say "WARNING: cargo install garage failed"
    LIFEBOAT_GARAGE="$GARAGE_ROOT/bin/garage"
  fi
  [[ -x "$LIFEBOAT_GARAGE" ]] || { echo "Garage binary $LIFEBOAT_GARAGE not found (set LIFEBOAT_GARAGE)" >&2; exit 1; }
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
DATA_DIR="${BENCH_DATA_DIR:-/tmp/lifeboat-bench-data}"
SEED="${BENCH_GEN_SEED:-42}"
mkdir -p "$DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd -P)"
DS_ARGS=()
for ds in "${DATASETS[@]}"; do
  case "$ds" in
    generated)
      scale="${BENCH_GEN_SCALE:-full}"
      gen_dir="$DATA_DIR/generated-$scale-s$SEED"
      python3 "$BENCH_DIR/gen_dataset.py" "$gen_dir" --scale "$scale" --seed "$SEED"
      DS_ARGS+=(--dataset "generated=$gen_dir") ;;
    million)
      files="${BENCH_MILLION_FILES:-1000000}"
      gen_dir="$DATA_DIR/million-$files-s$SEED"
      python3 "$BENCH_DIR/gen_dataset.py" "$gen_dir" --recipe million --files "$files" --seed "$SEED"
      DS_ARGS+=(--dataset "million=$gen_dir") ;;
    bigfile)
      mib="${BENCH_BIGFILE_MIB:-4096}"
      gen_dir="$DATA_DIR/bigfile-${mib}M-s$SEED"
      python3 "$BENCH_DIR/gen_dataset.py" "$gen_dir" --recipe bigfile --mib "$mib" --seed "$SEED"
      DS_ARGS+=(--dataset "bigfile=$gen_dir") ;;
    rustup)
      # The live toolchain is never backed up in place (the changed phase edits
      # the tree): a copy under $DATA_DIR is made once and refreshed when the
      # source's top two levels (names, sizes, mtimes) change or the copy is missing.
      rsrc="${BENCH_RUSTUP_DIR:-${RUSTUP_HOME:-$HOME/.rustup}}"
      [[ -d "$rsrc" ]] || { echo "rustup dataset $rsrc does not exist" >&2; exit 1; }
      rsrc="$(cd "$rsrc" && pwd -P)"
      rcopy="$DATA_DIR/rustup-copy"
      fp="$(cd "$rsrc" && find . -maxdepth 2 -printf '%p %s %T@\n' | LC_ALL=C sort | sha256sum | cut -c1-16)"
      want="{\"recipe\": \"rustup-copy\", \"source\": \"$rsrc\", \"fingerprint\": \"$fp\"}"
      if [[ -d "$rcopy" && -f "$rcopy.stamp" && "$(head -n1 "$rcopy.stamp")" == "$want" ]]; then
        say "reusing the copy $rcopy of $rsrc"
      else
        say "copying $rsrc to $rcopy (cp -a; once, reused while the source does not change)"
        rm -f "$rcopy.stamp" "$rcopy.mutation.json"
        rm -rf "$rcopy" "$rcopy.tmp" "$rcopy.mutation-hold"
        cp -a "$rsrc" "$rcopy.tmp"
        mv "$rcopy.tmp" "$rcopy"
        echo "$want" >"$rcopy.stamp"
      fi
      DS_ARGS+=(--dataset "rustup=$rcopy") ;;
  esac
done

if [[ $S3 -eq 1 ]]; then
  exec python3 "$BENCH_DIR/s3.py" "${DS_ARGS[@]}" --runs "$RUNS" \
    --scratch "$SCRATCH" --results-dir "$BENCH_DIR/results" --repo-root "$REPO_ROOT" \
    --lifeboat-bin "$LB" --garage-bin "$LIFEBOAT_GARAGE" ${EXTRA[@]+"${EXTRA[@]}"} \
    ${S3_EXTRA[@]+"${S3_EXTRA[@]}"}
fi
if [[ $LIFECYCLE -eq 1 ]]; then
  exec python3 "$BENCH_DIR/lifecycle.py" "${DS_ARGS[@]}" --runs "$RUNS" \
    --scratch "$SCRATCH" --results-dir "$BENCH_DIR/results" --repo-root "$REPO_ROOT" \
    --lifeboat-bin "$LB" ${EXTRA[@]+"${EXTRA[@]}"} ${LC_EXTRA[@]+"${LC_EXTRA[@]}"}
fi
exec python3 "$BENCH_DIR/bench.py" "${DS_ARGS[@]}" --runs "$RUNS" \
  --scratch "$SCRATCH" --results-dir "$BENCH_DIR/results" --repo-root "$REPO_ROOT" \
  --lifeboat-bin "$LB" ${EXTRA[@]+"${EXTRA[@]}"}
