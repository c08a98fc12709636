#!/usr/bin/env bash
# Coverage-guided fuzzing of lifeboat's parsers (cargo fuzz, libFuzzer); see docs/reliability.md.
#
#   fuzz/run.sh [--seconds N] [--jobs J] [--no-build] [--sanitizer S] [TARGET...]
#
# Builds every target (nightly, AddressSanitizer, debug assertions so overflows panic), then runs
# each TARGET (default: all) for N seconds (default 30), J targets at a time (default 1; each
# target is one libFuzzer process), seeded from fuzz/seeds/TARGET. New inputs go to
# fuzz/corpus/TARGET, crashes, OOMs and timeouts to fuzz/artifacts/TARGET, logs to
# fuzz/logs/TARGET.log (all three ignored by git). Prints one line per target (executions,
# exec/s, final cov and ft, corpus size in inputs as libFuzzer counts them and in files on
# disk, crashes) and exits non-zero if any target found one.
# --no-build runs the binaries built last time (long runs while the sources change).
# --sanitizer none builds without AddressSanitizer, into fuzz/target/sanitizer-none: still
# libFuzzer, coverage-guided, with debug assertions, but memory errors in unsafe or foreign code
# go unseen. Its cold build takes two thirds of the CPU; .ci/run uses it (docs/reliability.md).
set -euo pipefail

seconds=30
jobs=1
build=1
sanitizer=address
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#*=}"; shift ;;
        --jobs) jobs="$2"; shift 2 ;;
        --jobs=*) jobs="${1#*=}"; shift ;;
        --no-build) build=0; shift ;;
        --sanitizer) sanitizer="$2"; shift 2 ;;
        --sanitizer=*) sanitizer="${1#*=}"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

case "$sanitizer" in
    address|none) ;;
    *) echo "--sanitizer takes address (the default) or none" >&2; exit 2 ;;
esac

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz_dir")"
cd "$root"

# The longest input each target gets: room for what its format holds, small enough to stay fast.
max_len() {
    case "$1" in
        pack_header|index) echo 16384 ;;
        tree) echo 8192 ;;
        snapshot|key_file|config) echo 4096 ;;
        lock) echo 2048 ;;
        repo_url) echo 512 ;;
        *) echo 4096 ;;
    esac
}

all_targets=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -v '^lifeboat-fuzz$')
if [ ${#targets[@]} -eq 0 ]; then
    read -r -a targets <<< "$(echo $all_targets)"
fi
for t in "${targets[@]}"; do
    if ! grep -qx "$t" <<< "$all_targets"; then
        echo "unknown target $t (targets: $(echo $all_targets))" >&2
        exit 2
    fi
done

if ! cargo +nightly --version > /dev/null 2>&1; then
    echo "needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# The two builds keep apart, so that neither throws the other away.
target_dir="$fuzz_dir/target"
build_args=(--debug-assertions --sanitizer "$sanitizer")
if [ "$sanitizer" != address ]; then
    target_dir="$fuzz_dir/target/sanitizer-$sanitizer"
    build_args+=(--target-dir "$target_dir")
fi

started=$(date +%s)
# Every target at once: they share all their dependencies, so one more costs little.
if [ "$build" = 1 ] && ! cargo +nightly fuzz build "${build_args[@]}" > "$fuzz_dir/build.log" 2>&1; then
    tail -n 40 "$fuzz_dir/build.log" >&2
    echo "build failed (fuzz/build.log)" >&2
    exit 1
fi
built=$(date +%s)
echo "built in $((built - started)) s" >&2

triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="$target_dir/$triple/release"
mkdir -p "$fuzz_dir/logs"

run_one() {
    local t="$1"
    local corpus="$fuzz_dir/corpus/$t" artifacts="$fuzz_dir/artifacts/$t/" log="$fuzz_dir/logs/$t.log"
    mkdir -p "$corpus" "$artifacts"
    local before
    before=$(find "$artifacts" -type f | wc -l)
    local status=0
    "$bin_dir/$t" "$corpus" "$fuzz_dir/seeds/$t" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix="$artifacts" > "$log" 2>&1 || status=$?
    local after
    after=$(find "$artifacts" -type f | wc -l)
    echo "$status $((after - before))" > "$log.status"
}

# Up to $jobs targets at once.
pids=()
for t in "${targets[@]}"; do
    run_one "$t" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        sleep 1
    done
done
wait "${pids[@]}" 2>/dev/null || true

failed=0
printf '%-12s %8s %12s %9s %7s %7s %7s %7s %8s  %s\n' target seconds executions exec/s cov ft corpus files crashes result
for t in "${targets[@]}"; do
    log="$fuzz_dir/logs/$t.log"
    read -r status new < "$log.status"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")
    files=$(find "$fuzz_dir/corpus/$t" -type f | wc -l)
    result=ok
    if [ "$status" != 0 ] || [ "$new" != 0 ]; then
        failed=1
        artifact=$(ls -t "$fuzz_dir/artifacts/$t" 2>/dev/null | head -n 1)
        result="FAILED (exit $status): $(grep -m1 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" || echo 'see log'); artifact fuzz/artifacts/$t/$artifact; log fuzz/logs/$t.log"
    fi
    printf '%-12s %8s %12s %9s %7s %7s %7s %7s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$files" "$new" "$result"
done
echo "total wall time $(( $(date +%s) - started )) s (build $((built - started)) s)" >&2
exit "$failed"
