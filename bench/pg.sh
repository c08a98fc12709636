#!/usr/bin/env bash
# lifeboat PostgreSQL benchmark: physical base backup, WAL backlog archiving and archive
# lag under load, lifeboat against pgBackRest (Debian package), on one PostgreSQL 15
# cluster, in the same run.
#
#   bench/pg.sh [--runs 3] [--scale 100] [--only backup,wal,lag] [--segments 100]
#               [--lag-seconds 60] [--no-async] [--no-defaults] [--no-lag-pgbackrest]
#               [--no-lag-spool] [--no-floors] [--perf] [--quiet-wait 300] [--keep]
#               [--kdf-iterations N] [--no-install]
#
#   --runs N          runs per measurement, tools alternated run by run (default 3)
#   --scale S         pgbench -i scale of the database (default 100, about 1.5 GB)
#   --only LIST       phases to run, comma list of backup, wal, lag (default all three)
#   --segments N      WAL segments of the backlog phase (default 100)
#   --lag-seconds T   pgbench -T of the lag phase (default 60)
#   --no-async        skip pgBackRest archive-async=y in the backlog phase
#   --no-defaults     skip the one pgBackRest base backup with its default settings
#   --no-lag-pgbackrest  lag phase: no pgBackRest runs (they are for orientation)
#   --no-lag-spool    lag phase: no lifeboat runs sampled without `pg status` (those read
#                     the spool's done/ records instead, to show what the once-a-second
#                     status call, one key derivation each, costs the server)
#   --no-floors       skip the floors of the backup phase (pg_basebackup's tar stream as
#                     lifeboat runs it, to /dev/null and through zstd -3 -T2)
#   --perf            after the measured runs of backup and wal, one more lifeboat run of
#                     each under `perf record -F 499` (all its processes; not in the
#                     medians); the profile goes to perf-backup.txt and perf-wal.txt
#                     (by process, thread, library, symbol; perf-*.data kept beside)
#   --kdf-iterations N  lifeboat repositories made with `init --kdf-iterations N` (default:
#                     lifeboat's default key derivation, Argon2id 64 MiB, 12 iterations)
#   --quiet-wait S    before each measured run, wait up to S seconds (default 300) for the
#                     machine's CPU to be under 30% busy over 1 s (another build may be
#                     running); the load, busy % and wait are recorded either way
#   --keep            keep the scratch directory (its tmpfs mounts too: umount them after)
#   --no-install      do not apt-get install pgbackrest when it is missing
#
# Environment: LIFEBOAT_BIN (lifeboat binary; default target/release/lifeboat; it is
# copied into the scratch dir, so a rebuild during the run does not change what is
# measured), PG_BIN (default /usr/lib/postgresql/15/bin), BENCH_PG_SCRATCH_BASE (where
# the scratch dir is made, default /tmp), BENCH_PG_TIMEOUT (seconds, default 1800, for
# any one measured command), BENCH_PG_DATA_TMPFS (auto|yes|no, default auto: the cluster's
# data directory goes on a tmpfs when the scratch disk has less than scale*16+5000 MiB
# free; the repositories and spools always stay on the scratch disk).  Before each phase
# and run the free space is checked and the script stops rather than fill the disk.
#
# What is measured (all as the postgres user; the server listens on 127.0.0.1 on a free
# port, socket in the scratch dir; everything started is stopped on exit):
#   backup  `lifeboat pg backup` against `pgbackrest backup --type=full` (compress-type=zst
#           compress-level=3 repo1-cipher-type=aes-256-cbc process-max=2 start-fast=y),
#           fresh repository every run; archive_command switched with ALTER SYSTEM to the
#           tool being measured.  Plus one pgBackRest run with its defaults.
#   wal     N real segments of this cluster (archived aside by a cp archive_command while
#           pgbench ran), pushed with N `lifeboat pg wal-push` calls and a `--drain`, until
#           the spool is empty, against N `pgbackrest archive-push` calls (sync; and
#           archive-async=y process-max=2), fresh repository and spool every run.
#   lag     pgbench -c 2 -j 2 -T 60 with lifeboat's archive_command; once a second: the
#           server's current WAL file, pg_stat_archiver, `lifeboat pg status --json`.
#           Same with pgBackRest's archive_command (probe: `pgbackrest info`) for
#           orientation, and lifeboat again sampled from its spool only (no status call).
#
# Markdown report to stdout, progress to stderr, raw figures and logs in
# bench/results/pg-<date>/ (results.tsv, lag samples, command output).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
HELPER="$BENCH_DIR/pg/helper.py"

RUNS=3
SCALE=100
ONLY="backup,wal,lag"
SEGMENTS=100
LAG_SECONDS=60
ASYNC=1
DEFAULTS=1
LAG_PGBR=1
LAG_SPOOL=1
FLOORS=1
PERF=0
KDF_ITER=""
KEEP=0
INSTALL=1
PGBIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
TMO="${BENCH_PG_TIMEOUT:-1800}"
QUIET_WAIT=300
QUIET_PCT=30

usage() { sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
say() { echo "[pg.sh $(date +%H:%M:%S)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --segments) SEGMENTS="$2"; shift 2 ;;
    --lag-seconds) LAG_SECONDS="$2"; shift 2 ;;
    --no-async) ASYNC=0; shift ;;
    --no-defaults) DEFAULTS=0; shift ;;
    --no-lag-pgbackrest) LAG_PGBR=0; shift ;;
    --no-lag-spool) LAG_SPOOL=0; shift ;;
    --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
    --no-floors) FLOORS=0; shift ;;
    --perf) PERF=1; shift ;;
    --kdf-iterations) KDF_ITER="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || { echo "--quiet-wait takes seconds" >&2; exit 2; }
for v in RUNS SCALE SEGMENTS LAG_SECONDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer"
done
IFS=',' read -r -a PHASES <<<"$ONLY"
for p in "${PHASES[@]}"; do
  [[ "$p" == backup || "$p" == wal || "$p" == lag ]] || die "--only takes backup, wal, lag or a comma list of them"
done
has_phase() { [[ ",$ONLY," == *",$1,"* ]]; }
[[ $(id -u) -eq 0 ]] || die "run as root (the server and the tools run as the postgres user through runuser)"
id postgres >/dev/null 2>&1 || die "no postgres user"
[[ -x "$PGBIN/postgres" ]] || die "no PostgreSQL binaries in $PGBIN"

# ---------------------------------------------------------------- installs
if ! command -v pgbackrest >/dev/null 2>&1; then
  [[ $INSTALL -eq 1 ]] || die "pgbackrest is not installed (and --no-install)"
  say "apt-get install -y pgbackrest"
  DEBIAN_FRONTEND=noninteractive apt-get install -y pgbackrest >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbackrest >&2; } ||
    die "could not install pgbackrest"
fi
[[ $PERF -eq 0 ]] || command -v perf >/dev/null 2>&1 || die "--perf needs perf (apt-get install linux-perf)"
[[ $FLOORS -eq 0 ]] || command -v zstd >/dev/null 2>&1 || die "the floors need zstd (or give --no-floors)"
for b in python3 runuser flock timeout du; do
  command -v "$b" >/dev/null 2>&1 || die "required program $b is missing"
done
TIME_V=()
if [[ -x /usr/bin/time ]]; then TIME_V=(/usr/bin/time -v); fi

LB_SRC="${LIFEBOAT_BIN:-$REPO_ROOT/target/release/lifeboat}"
[[ -x "$LB_SRC" ]] || die "lifeboat binary $LB_SRC not found: build it (cargo build --release) and/or set LIFEBOAT_BIN"

# ---------------------------------------------------------------- scratch
STAMP="$(date +%Y-%m-%d-%H%M%S)"
RESULTS="$BENCH_DIR/results/pg-$STAMP"
mkdir -p "$RESULTS"
TSV="$RESULTS/results.tsv"
: >"$TSV"
SCRATCH="$(mktemp -d "${BENCH_PG_SCRATCH_BASE:-/tmp}/pgbench-XXXX")"
chmod 755 "$SCRATCH"
MEM="$SCRATCH/mem"            # tmpfs: the binary, the source WAL segments, pgBackRest's fake pg_wal
DATA="$SCRATCH/data"
SOCK="$SCRATCH/sock"
PGHOME="$SCRATCH/home"
OUT="$SCRATCH/out"            # postgres-writable: /usr/bin/time -v files, command output
LB_REPO="$SCRATCH/lb-repo"    # the server's lifeboat repository (archive_command, pg backup)
LB_SPOOL="$SCRATCH/lb-spool"  # the server's lifeboat spool
PGBR_REPO="$SCRATCH/pgbr-repo"
CONF="$SCRATCH/conf"
PW="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PORT="$(python3 "$HELPER" freeport)"
SERVER_UP=0
MEM_MOUNTED=0
PGMEM_MOUNTED=0
BG_PIDS=()


PATH_PG="$PGBIN:/usr/local/bin:/usr/bin:/bin"
# as_pg CMD...: run as postgres with a clean environment (plus VAR=value words given first)
as_pg() { runuser -u postgres -- env -i PATH="$PATH_PG" HOME="$PGHOME" LANG=C.UTF-8 TZ=UTC "$@"; }
# lifeboat's environment: the server's repository and spool unless overridden
lb_env() { # lb_env REPO SPOOL
  echo "LIFEBOAT_REPOSITORY=$1" "LIFEBOAT_PASSWORD=$PW" "LIFEBOAT_PG_SPOOL=$2" "LIFEBOAT_PG_BIN=$PGBIN"
}
pg_conn=(PGHOST="$SOCK" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres)
q() { as_pg "${pg_conn[@]}" psql -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; }  # rec PHASE TOOL RUN METRIC VALUE
load1() { cut -d' ' -f1 /proc/loadavg; }
cpu_busy() { # percent of the machine's CPU time busy during the next second
  local a b
  read -r -a a < <(head -n1 /proc/stat)
  sleep 1
  read -r -a b < <(head -n1 /proc/stat)
  awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" -v q1="${a[6]}" -v r1="${a[7]}" \
      -v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" -v w2="${b[5]}" -v q2="${b[6]}" -v r2="${b[7]}" \
      'BEGIN { busy = (u2+n2+s2+q2+r2) - (u1+n1+s1+q1+r1); idle = (i2+w2) - (i1+w1);
               printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}
note_load() { # note_load PHASE TOOL RUN: loadavg, CPU busy in the second before, compilers running
  local l c r waited=0
  # wait (at most QUIET_WAIT s) for the machine to be quiet: another engineer may be compiling
  c="$(cpu_busy)"
  while [[ $c -gt $QUIET_PCT && $waited -lt $QUIET_WAIT ]]; do
    [[ $waited -eq 0 ]] && say "CPU ${c}% busy before $1/$2 run $3: waiting up to $QUIET_WAIT s for it to drop under $QUIET_PCT%"
    sleep 4; waited=$(( waited + 5 ))
    c="$(cpu_busy)"
  done
  l="$(cat /proc/loadavg)"
  r="$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|cargo)$' || true)"
  say "before $1/$2 run $3: loadavg $l; CPU busy ${c}% over 1 s; $r rustc/cargo/cc/ld process(es); waited ${waited} s"
  echo "$1 $2 $3 loadavg=[$l] cpu_busy_1s=$c% compilers=$r waited=${waited}s" >>"$RESULTS/loadavg.txt"
  rec "$1" "$2" "$3" quiet_wait_s "$waited"
  rec "$1" "$2" "$3" load1 "${l%% *}"
  rec "$1" "$2" "$3" cpu_busy_pct "$c"
  rec "$1" "$2" "$3" compilers "$r"
}
bytes() { du -sb "$1" 2>/dev/null | cut -f1; }
free_mib() { df -Pm "$SCRATCH" | awk 'NR == 2 { print $4 }'; }
need_free() { # need_free MIB WHAT
  local f; f="$(free_mib)"
  [[ "$f" -ge "$1" ]] || die "only $f MiB free on $(df -P "$SCRATCH" | awk 'NR==2{print $6}') for $2 (needs about $1 MiB)"
}

# holders FILE: ids of the processes that have FILE open (the lock files of our pushers)
holders() {
  local p fd
  for p in /proc/[0-9]*; do
    for fd in "$p"/fd/*; do
      if [[ "$(readlink "$fd" 2>/dev/null)" == "$1" ]]; then echo "${p#/proc/}"; break; fi
    done
  done 2>/dev/null
  return 0
}

cleanup() {
  local rc=$?
  set +e
  touch "$SCRATCH/stop-sampler" 2>/dev/null
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [[ $SERVER_UP -eq 1 ]]; then
    say "stopping the server"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 120 stop >/dev/null 2>&1 ||
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t 60 stop >/dev/null 2>&1
  fi
  # background lifeboat pushers and pgBackRest async processes this run started (each
  # holds its lock file); found by the lock file, ended by id
  local f pid
  for f in "$SCRATCH"/*spool*/pusher.lock "$SCRATCH"/pgbr-lock/*.lock; do
    [[ -e "$f" ]] || continue
    for pid in $(holders "$f"); do say "ending process $pid (holds $f)"; kill "$pid" 2>/dev/null; done
  done
  sleep 0.5
  [[ -f "$SCRATCH/server.log" ]] && cp "$SCRATCH/server.log" "$RESULTS/server.log" 2>/dev/null
  [[ $MEM_MOUNTED -eq 1 ]] && umount "$MEM" 2>/dev/null
  [[ $PGMEM_MOUNTED -eq 1 && $KEEP -eq 0 ]] && umount "$SCRATCH/pgmem" 2>/dev/null
  if [[ $KEEP -eq 1 ]]; then
    say "scratch kept in $SCRATCH"
  else
    [[ $MEM_MOUNTED -eq 1 ]] && mountpoint -q "$MEM" && umount -l "$MEM"
    rm -rf "$SCRATCH"
  fi
  say "results in $RESULTS"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$MEM" "$SOCK" "$PGHOME" "$OUT" "$CONF"
mem_mib=$(( SEGMENTS * 16 * 2 + 512 ))
mount -t tmpfs -o "size=${mem_mib}m,mode=755" tmpfs "$MEM" && MEM_MOUNTED=1 || die "cannot mount a tmpfs on $MEM"
# The cluster's data directory: on the scratch disk, or on a tmpfs when that disk lacks
# the room (auto), so that the benchmark never fills a disk others use. The repositories
# and spools stay on the scratch disk either way (their writes and fsyncs are measured).
DATA_TMPFS="${BENCH_PG_DATA_TMPFS:-auto}"
disk_free_mib="$(df -Pm "$SCRATCH" | awk 'NR == 2 { print $4 }')"
if [[ $DATA_TMPFS == auto ]]; then
  if [[ $disk_free_mib -lt $(( SCALE * 16 + 5000 )) ]]; then DATA_TMPFS=yes; else DATA_TMPFS=no; fi
fi
if [[ $DATA_TMPFS == yes ]]; then
  mkdir -p "$SCRATCH/pgmem"
  mount -t tmpfs -o "size=$(( SCALE * 16 + 3072 ))m,mode=755" tmpfs "$SCRATCH/pgmem" && PGMEM_MOUNTED=1 ||
    die "cannot mount a tmpfs on $SCRATCH/pgmem"
  DATA="$SCRATCH/pgmem/data"
  say "data directory on a tmpfs ($disk_free_mib MiB free on the scratch disk; BENCH_PG_DATA_TMPFS=no to refuse)"
fi
mkdir -p "$MEM/bin"
cp "$LB_SRC" "$MEM/bin/lifeboat"
cp "$BENCH_DIR/pg/helper.py" "$MEM/bin/helper.py"   # the postgres user may not read the checkout
chmod 755 "$MEM/bin/lifeboat" "$MEM/bin/helper.py"
LB="$MEM/bin/lifeboat"
chown -R postgres:postgres "$SCRATCH"
chmod 755 "$MEM"

# ---------------------------------------------------------------- server
SERVER_IDLE=""   # LIFEBOAT_PG_PUSHER_IDLE of the server's environment ("" = lifeboat's default)
start_server() {
  local extra=()
  if [[ -n "$SERVER_IDLE" ]]; then extra+=("LIFEBOAT_PG_PUSHER_IDLE=$SERVER_IDLE"); fi
  # shellcheck disable=SC2046
  as_pg $(lb_env "$LB_REPO" "$LB_SPOOL") "${extra[@]}" \
    "$PGBIN/pg_ctl" -D "$DATA" -l "$SCRATCH/server.log" -w -t 300 start >/dev/null
  SERVER_UP=1
}
stop_server() {
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 300 stop >/dev/null
  SERVER_UP=0
}
server_log_tail() { tail -n 30 "$SCRATCH/server.log" >&2 || true; }

set_archive() { # set_archive COMMAND
  q "ALTER SYSTEM SET archive_command = '$1'" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
  local i
  for i in $(seq 100); do
    [[ "$(q 'SHOW archive_command')" == "$1" ]] && { sleep 0.5; return 0; }
    sleep 0.1
  done
  die "archive_command did not change to $1"
}
ready_count() { find "$DATA/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l; }
wait_archive_idle() { # wait until the archiver has nothing left (or die)
  local limit=$(( $(date +%s) + ${1:-300} ))
  while [[ "$(ready_count)" -gt 0 ]]; do
    if [[ $(date +%s) -gt $limit ]]; then
      server_log_tail
      die "the archiver still has $(ready_count) segment(s) to archive after ${1:-300} s ($(q 'SELECT failed_count, last_failed_wal FROM pg_stat_archiver'))"
    fi
    sleep 0.1
  done
}
switch_and_wait() { # a new segment through the current archive_command, all archived
  q "CHECKPOINT" >/dev/null
  q "SELECT pg_switch_wal()" >/dev/null
  sleep 0.2
  wait_archive_idle "${1:-300}"
}

LB_ARCHIVE="$LB pg wal-push %p"
pgbr_archive() { echo "pgbackrest --config=$CONF/pgbr-$1.conf --stanza=bench archive-push %p"; }

wait_pusher_gone() { # wait_pusher_gone SPOOL: no lifeboat pusher holds SPOOL's lock
  local lock="$1/pusher.lock" limit=$(( $(date +%s) + 180 ))
  [[ -e "$lock" ]] || return 0
  # flock as postgres: should the file vanish meanwhile, the one flock creates is still theirs
  until runuser -u postgres -- flock -n "$lock" true 2>/dev/null; do
    [[ $(date +%s) -gt $limit ]] && die "a lifeboat pusher still holds $lock after 180 s (pids: $(holders "$lock"))"
    sleep 0.2
  done
}
wait_pgbr_locks_free() {
  local f limit=$(( $(date +%s) + 180 ))
  for f in "$SCRATCH"/pgbr-lock/*.lock; do
    [[ -e "$f" ]] || continue
    until runuser -u postgres -- flock -n "$f" true 2>/dev/null; do
      [[ $(date +%s) -gt $limit ]] && die "pgBackRest still holds $f after 180 s"
      sleep 0.2
    done
  done
}
spool_empty() { [[ -z "$(ls -A "$1/ready" 2>/dev/null)" ]]; }

lb_init() { # lb_init REPO: a fresh lifeboat repository (default key derivation)
  rm -rf "$1"
  as_pg LIFEBOAT_REPOSITORY="$1" LIFEBOAT_PASSWORD="$PW" "$LB" init ${KDF_ITER:+--kdf-iterations "$KDF_ITER"} >>"$RESULTS/lifeboat-init.log" 2>&1 ||
    die "lifeboat init $1 failed: $(tail -n 5 "$RESULTS/lifeboat-init.log")"
}
fresh_server_lb() { # fresh repository and spool for the server's archive_command
  wait_pusher_gone "$LB_SPOOL"
  if [[ -f "$LB_SPOOL/pusher.log" ]]; then cat "$LB_SPOOL/pusher.log" >>"$RESULTS/pusher.log"; fi
  rm -rf "$LB_SPOOL"
  lb_init "$LB_REPO"
}
fresh_pgbr() { # fresh_pgbr CONFIG: empty pgBackRest repository, stanza created
  wait_pgbr_locks_free
  rm -rf "$PGBR_REPO" "$SCRATCH/pgbr-spool"
  mkdir -p "$PGBR_REPO" "$SCRATCH/pgbr-spool"
  chown postgres:postgres "$PGBR_REPO" "$SCRATCH/pgbr-spool"
  as_pg pgbackrest --config="$CONF/pgbr-$1.conf" --stanza=bench stanza-create >>"$RESULTS/pgbackrest.log" 2>&1 ||
    die "pgbackrest stanza-create failed: $(tail -n 5 "$RESULTS/pgbackrest.log")"
}

# ---------------------------------------------------------------- pgBackRest configs
write_pgbr_conf() { # write_pgbr_conf NAME PG1-PATH OPTION-LINES...
  local name="$1" pg1="$2"; shift 2
  {
    echo "[global]"
    echo "repo1-path=$PGBR_REPO"
    echo "repo1-retention-full=99"
    echo "log-path=$SCRATCH/pgbr-log"
    echo "lock-path=$SCRATCH/pgbr-lock"
    echo "spool-path=$SCRATCH/pgbr-spool"
    echo "log-level-console=warn"
    printf '%s\n' "$@"
    echo
    echo "[bench]"
    echo "pg1-path=$pg1"
    echo "pg1-port=$PORT"
    echo "pg1-socket-path=$SOCK"
    echo "pg1-user=postgres"
  } >"$CONF/pgbr-$name.conf"
}
TUNED=("compress-type=zst" "compress-level=3" "repo1-cipher-type=aes-256-cbc" "repo1-cipher-pass=$PW"
       "process-max=2" "start-fast=y")
write_pgbr_conf tuned "$DATA" "${TUNED[@]}"
write_pgbr_conf defaults "$DATA" "start-fast=y"
write_pgbr_conf async "$MEM/fakepg" "${TUNED[@]}" "archive-async=y"
mkdir -p "$SCRATCH/pgbr-log" "$SCRATCH/pgbr-lock" "$SCRATCH/pgbr-spool"
chown -R postgres:postgres "$CONF" "$SCRATCH/pgbr-log" "$SCRATCH/pgbr-lock" "$SCRATCH/pgbr-spool"
chmod 700 "$CONF"
cp "$CONF/pgbr-tuned.conf" "$RESULTS/pgbackrest-tuned.conf"
sed -i 's/^repo1-cipher-pass=.*/repo1-cipher-pass=(random, per run)/' "$RESULTS/pgbackrest-tuned.conf"

# ---------------------------------------------------------------- cluster
{
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
  echo "lifeboat: $("$LB" --version) from $LB_SRC ($(stat -c '%y' "$LB_SRC"))"
  echo "lifeboat tree: $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null) $(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -c . || true) modified file(s) in the work tree"
  echo "pgbackrest: $(pgbackrest version)"
  echo "postgres: $("$PGBIN/postgres" --version)"
  echo "scratch: $SCRATCH on $(df -P "$SCRATCH" | awk 'NR==2{print $1}') ($disk_free_mib MiB free at the start), tmpfs $MEM"
  echo "data directory: $DATA ($([[ $DATA_TMPFS == yes ]] && echo "tmpfs" || echo "scratch disk"))"
  echo "lifeboat key derivation: Argon2id 64 MiB, ${KDF_ITER:-12 (default)} iterations; password from LIFEBOAT_PASSWORD"
  echo "options: runs=$RUNS scale=$SCALE only=$ONLY segments=$SEGMENTS lag_seconds=$LAG_SECONDS"
} >"$RESULTS/env.txt"
cat "$RESULTS/env.txt" >&2
rec setup - 0 scale "$SCALE"
rec setup - 0 segments "$SEGMENTS"
rec setup - 0 lag_seconds "$LAG_SECONDS"

if [[ $DATA_TMPFS == yes ]]; then need_free 1500 "the repositories"; else need_free $(( SCALE * 16 + 2500 )) "the cluster (scale $SCALE), its WAL and the repositories"; fi
say "initdb in $DATA (port $PORT, socket $SOCK)"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$RESULTS/initdb.log" 2>&1 ||
  die "initdb failed: $(tail -n 5 "$RESULTS/initdb.log")"
cat >>"$DATA/postgresql.conf" <<EOF

# bench/pg.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
max_wal_size = 1GB
logging_collector = off
log_checkpoints = on
EOF
# the data is loaded without WAL (wal_level=minimal), then the server restarts archiving
cat >"$DATA/bench-load.conf" <<EOF
wal_level = minimal
max_wal_senders = 0
archive_mode = off
EOF
cat >"$DATA/bench-archive.conf" <<EOF
wal_level = replica
max_wal_senders = 4
archive_mode = on
archive_command = '$LB_ARCHIVE'
EOF
echo "include_if_exists = 'bench-phase.conf'" >>"$DATA/postgresql.conf"
cp "$DATA/bench-load.conf" "$DATA/bench-phase.conf"
chown postgres:postgres "$DATA"/*.conf
start_server
say "pgbench -i -s $SCALE (wal_level=minimal, no archiving)"
t0=$(now)
as_pg "${pg_conn[@]}" pgbench -i -s "$SCALE" -q >"$RESULTS/pgbench-init.log" 2>&1 ||
  die "pgbench -i failed: $(tail -n 5 "$RESULTS/pgbench-init.log")"
q "CHECKPOINT" >/dev/null
say "loaded in $(dt "$t0" "$(now)") s: database $(q "SELECT pg_size_pretty(pg_database_size('postgres'))"), data dir $(du -sh "$DATA" | cut -f1)"
rec setup - 0 db_bytes "$(q "SELECT pg_database_size('postgres')")"
stop_server
cp "$DATA/bench-archive.conf" "$DATA/bench-phase.conf"
chown postgres:postgres "$DATA/bench-phase.conf"
SERVER_IDLE=5   # pushers leave after 5 s idle (default 30), so the repositories can be renewed sooner
start_server
say "server up with archive_mode=on, wal_level=replica"

# ---------------------------------------------------------------- phase 1: base backup
WRAP=()   # a command put before the measured one (perf record for --perf)
backup_lifeboat() { # backup_lifeboat RUN [TOOLNAME]
  local run="$1" tool="${2:-lifeboat}" t0 t1 t2 rc=0
  fresh_server_lb
  set_archive "$LB_ARCHIVE"
  switch_and_wait
  wait_pusher_gone "$LB_SPOOL"
  sync
  note_load backup "$tool" "$run"
  t0=$(now)
  # shellcheck disable=SC2046
  "${WRAP[@]}" runuser -u postgres -- env -i PATH="$PATH_PG" HOME="$PGHOME" LANG=C.UTF-8 TZ=UTC \
    $(lb_env "$LB_REPO" "$LB_SPOOL") "${pg_conn[@]}" "${TIME_V[@]}" ${TIME_V:+-o "$OUT/backup-$tool-$run.time"} \
    timeout "$TMO" "$LB" pg backup --json >"$RESULTS/backup-$tool-$run.out" 2>"$RESULTS/backup-$tool-$run.err" || rc=$?
  t1=$(now)
  [[ $rc -eq 0 ]] || { server_log_tail; die "lifeboat pg backup failed (exit $rc): $(tail -n 5 "$RESULTS/backup-$tool-$run.err")"; }
  local limit=$(( $(date +%s) + 300 ))
  until spool_empty "$LB_SPOOL" && [[ "$(ready_count)" -eq 0 ]]; do
    [[ $(date +%s) -gt $limit ]] && die "the backup's WAL was not stored within 300 s"
    sleep 0.05
  done
  t2=$(now)
  wait_pusher_gone "$LB_SPOOL"
  rec backup "$tool" "$run" wall_s "$(dt "$t0" "$t1")"
  rec backup "$tool" "$run" wall_plus_wal_s "$(dt "$t0" "$t2")"
  rec_time backup "$tool" "$run" "$OUT/backup-$tool-$run.time"
  rec backup "$tool" "$run" repo_bytes "$(bytes "$LB_REPO")"
  say "$tool pg backup run $run: $(dt "$t0" "$t1") s (with its WAL stored: $(dt "$t0" "$t2") s), repository $(du -sh "$LB_REPO" | cut -f1)"
}
rec_time() { # rec_time PHASE TOOL RUN TIMEFILE: peak RSS and CPU from /usr/bin/time -v
  [[ -f "$4" ]] || return 0
  cp "$4" "$RESULTS/$1-$2-$3.time"
  local rss u s
  rss="$(python3 "$HELPER" rss "$4")"
  u="$(awk -F': ' '/User time/ {print $2}' "$4")"
  s="$(awk -F': ' '/System time/ {print $2}' "$4")"
  if [[ -n "$rss" ]]; then rec "$1" "$2" "$3" rss_kib "$rss"; fi
  if [[ -n "$u" && -n "$s" ]]; then rec "$1" "$2" "$3" cpu_s "$(awk -v a="$u" -v b="$s" 'BEGIN{print a+b}')"; fi
}
backup_pgbr() { # backup_pgbr RUN CONFIG TOOLNAME
  local run="$1" cfg="$2" tool="$3" t0 t1 rc=0
  fresh_pgbr "$cfg"
  set_archive "$(pgbr_archive "$cfg")"
  switch_and_wait
  sync
  note_load backup "$tool" "$run"
  t0=$(now)
  as_pg "${TIME_V[@]}" ${TIME_V:+-o "$OUT/backup-$tool-$run.time"} \
    timeout "$TMO" pgbackrest --config="$CONF/pgbr-$cfg.conf" --stanza=bench backup --type=full \
    >"$RESULTS/backup-$tool-$run.out" 2>&1 || rc=$?
  t1=$(now)
  [[ $rc -eq 0 ]] || { server_log_tail; die "pgbackrest backup failed (exit $rc): $(tail -n 5 "$RESULTS/backup-$tool-$run.out")"; }
  rec backup "$tool" "$run" wall_s "$(dt "$t0" "$t1")"
  rec_time backup "$tool" "$run" "$OUT/backup-$tool-$run.time"
  rec backup "$tool" "$run" repo_bytes "$(bytes "$PGBR_REPO")"
  rec backup "$tool" "$run" backup_dir_bytes "$(bytes "$PGBR_REPO/backup")"
  as_pg pgbackrest --config="$CONF/pgbr-$cfg.conf" --stanza=bench info >"$RESULTS/backup-$tool-$run.info" 2>&1 || true
  say "pgbackrest backup ($cfg) run $run: $(dt "$t0" "$t1") s, repository $(du -sh "$PGBR_REPO" | cut -f1)"
}

floor_backup() { # floor_backup RUN: pg_basebackup's tar stream (as lifeboat runs it) to
  # /dev/null, and through zstd -3 -T2: what the server side and compression alone take
  local run="$1" name pipe t0 t1 rc
  for name in floor-stream floor-zstd; do
    fresh_server_lb
    set_archive "$LB_ARCHIVE"
    switch_and_wait
    wait_pusher_gone "$LB_SPOOL"
    if [[ $name == floor-stream ]]; then pipe="cat"; else pipe="zstd -3 -T2 -q -c"; fi
    sync
    note_load backup "$name" "$run"
    rc=0
    t0=$(now)
    # shellcheck disable=SC2016
    as_pg "${pg_conn[@]}" bash -c 'set -o pipefail; "$1"/pg_basebackup --pgdata=- --format=tar --wal-method=fetch \
      --manifest-checksums=NONE --no-password --label=floor --checkpoint=fast | $2 >/dev/null' _ "$PGBIN" "$pipe" \
      2>"$RESULTS/backup-$name-$run.err" || rc=$?
    t1=$(now)
    [[ $rc -eq 0 ]] || die "floor $name failed (exit $rc): $(tail -n 5 "$RESULTS/backup-$name-$run.err")"
    rec backup "$name" "$run" wall_s "$(dt "$t0" "$t1")"
    say "$name run $run: $(dt "$t0" "$t1") s"
    wait_archive_idle
  done
}

perf_report() { # perf_report DATA OUT: where the time went, by process, by library, by symbol
  {
    echo "# perf record -F 499 of the whole command (all its processes); samples by command"
    perf report -i "$1" --stdio --no-children --sort comm 2>/dev/null | grep -v '^$' | head -n 25 || true
    echo
    echo "# by thread (pid:command; a thread's CPU seconds = samples / 499)"
    perf report -i "$1" --stdio --no-children --sort pid -F overhead,sample,pid 2>/dev/null | grep -v '^$' | grep -v '^#' |
      sort -k2,2 -rn | head -n 12 || true
    echo
    echo "# the 4 busiest threads, by symbol (percent of all samples)"
    local tid by_sym
    by_sym="$(perf report -i "$1" --stdio --no-children --sort pid,dso,symbol 2>/dev/null | grep -v '^#' || true)"
    for tid in $(perf report -i "$1" --stdio --no-children --sort pid -F sample,pid 2>/dev/null | grep -v '^#' |
                 awk 'NF >= 2 { split($2, a, ":"); print $1, a[1] }' | sort -rn | head -n 4 | awk '{print $2}' || true); do
      echo "## thread $tid"
      grep -E "^ *[0-9.]+% +$tid:" <<<"$by_sym" | head -n 8 || true
    done
    echo
    echo "# by command and shared object"
    perf report -i "$1" --stdio --no-children --sort comm,dso 2>/dev/null | grep -v '^$' | grep -v '^#' | head -n 30 || true
    echo
    echo "# by symbol (>= 0.5%)"
    perf report -i "$1" --stdio --no-children --sort comm,dso,symbol --percent-limit 0.5 2>/dev/null |
      grep -v '^$' | grep -v '^#' | head -n 80 || true
  } >"$2"
  mv "$1" "${2%.txt}.data"   # for `perf report -i` later (a few MB)
  say "perf profile in $2 (data: ${2%.txt}.data)"
}

if has_phase backup; then
  say "== phase backup: $RUNS run(s) each, alternated"
  for run in $(seq "$RUNS"); do
    need_free 1200 "a base backup"
    backup_lifeboat "$run"
    fresh_server_lb   # frees the space; archive_command keeps a repository to push to
    backup_pgbr "$run" tuned pgbackrest
    rm -rf "$PGBR_REPO"
    if [[ $FLOORS -eq 1 ]]; then floor_backup "$run"; fi
  done
  if [[ $DEFAULTS -eq 1 ]]; then
    backup_pgbr 1 defaults pgbackrest-defaults
    rm -rf "$PGBR_REPO"
  fi
  if [[ $PERF -eq 1 ]]; then  # one more lifeboat run, under perf record (not in the medians)
    WRAP=(perf record -F 499 -q -o "$MEM/perf-backup.data" --)
    backup_lifeboat 1 lifeboat-perf
    WRAP=()
    perf_report "$MEM/perf-backup.data" "$RESULTS/perf-backup.txt"
    fresh_server_lb
  fi
fi

# ---------------------------------------------------------------- phase 2: WAL backlog
WALSRC="$MEM/walsrc"
FAKEPG="$MEM/fakepg"
make_segments() {
  mkdir -p "$WALSRC"; chown postgres:postgres "$WALSRC"
  set_archive "test ! -f $WALSRC/%f && cp %p $WALSRC/%f"
  say "generating $SEGMENTS WAL segments with pgbench (archived aside by cp into tmpfs)"
  local limit=$(( $(date +%s) + 1800 )) n=0
  while :; do
    n=$(find "$WALSRC" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' | wc -l)
    [[ $n -ge $(( SEGMENTS + 1 )) ]] && break
    [[ $(date +%s) -gt $limit ]] && die "only $n segments after 30 minutes of pgbench"
    as_pg "${pg_conn[@]}" pgbench -n -c 2 -j 2 -T 10 >>"$RESULTS/pgbench-wal-gen.log" 2>&1 || die "pgbench failed"
    q "CHECKPOINT" >/dev/null   # more full-page images: WAL faster
  done
  switch_and_wait
  # the first SEGMENTS segments: the one closed by pg_switch_wal above (mostly zeros) is
  # newer than those, as SEGMENTS+1 were archived before it
  find "$WALSRC" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' -size 16M -printf '%f\n' |
    LC_ALL=C sort | head -n "$SEGMENTS" >"$MEM/segments.txt"
  [[ $(wc -l <"$MEM/segments.txt") -eq $SEGMENTS ]] || die "fewer than $SEGMENTS complete segments"
  say "segments $(head -n1 "$MEM/segments.txt")..$(tail -n1 "$MEM/segments.txt"), $(du -sh "$WALSRC" | cut -f1) in $WALSRC"
  if command -v zstd >/dev/null; then
    say "zstd -3 of them: $(sed "s|^|$WALSRC/|" "$MEM/segments.txt" | xargs cat | zstd -3 -T1 -c | wc -c | awk '{printf "%.0f MiB", $1/1048576}')"
  fi
  cp "$MEM/segments.txt" "$RESULTS/segments.txt"
  # pgBackRest's async mode finds its work through pg_wal/archive_status/*.ready of pg1-path:
  # a data directory made of the real control file and the same segments (hard links)
  mkdir -p "$FAKEPG/global" "$FAKEPG/pg_wal/archive_status"
  cp "$DATA/global/pg_control" "$FAKEPG/global/"
  cp "$DATA/PG_VERSION" "$FAKEPG/"
  local s
  while read -r s; do
    ln "$WALSRC/$s" "$FAKEPG/pg_wal/$s"
    touch "$FAKEPG/pg_wal/archive_status/$s.ready"
  done <"$MEM/segments.txt"
  chown -R postgres:postgres "$FAKEPG"
  chmod 700 "$FAKEPG"
  set_archive "$LB_ARCHIVE"
}

wal_lifeboat() { # wal_lifeboat RUN [TOOLNAME]
  local run="$1" tool="${2:-lifeboat}" repo="$SCRATCH/wal-lb-repo" spool="$SCRATCH/wal-lb-spool" times rc=0
  rm -rf "$spool"; lb_init "$repo"
  sync
  note_load wal "$tool" "$run"
  # one shell as postgres times it all (no runuser per call): N wal-push, one --drain,
  # then until the spool's ready/ is empty (a file leaves ready/ once stored)
  # shellcheck disable=SC2046,SC2016
  times="$("${WRAP[@]}" runuser -u postgres -- env -i PATH="$PATH_PG" HOME="$PGHOME" LANG=C.UTF-8 TZ=UTC \
    $(lb_env "$repo" "$spool") LIFEBOAT_PG_PUSHER_IDLE=5 bash -c '
    set -e
    lb="$1" data="$2" src="$3" list="$4" spool="$5"
    t0=$(date +%s.%N)
    while read -r s; do "$lb" pg wal-push --pgdata "$data" "$src/$s"; done <"$list"
    t1=$(date +%s.%N)
    "$lb" pg wal-push --pgdata "$data" --drain >/dev/null
    t2=$(date +%s.%N)
    end=$(( $(date +%s) + 600 ))
    while [ -n "$(ls -A "$spool/ready")" ]; do
      [ "$(date +%s)" -lt "$end" ] || { echo "spool not empty after 600 s" >&2; exit 1; }
      sleep 0.02
    done
    t3=$(date +%s.%N)
    echo "$t0 $t1 $t2 $t3"' _ "$LB" "$DATA" "$WALSRC" "$MEM/segments.txt" "$spool" 2>"$RESULTS/wal-$tool-$run.err")" || rc=$?
  [[ $rc -eq 0 ]] || die "lifeboat wal-push run $run failed (exit $rc): $(tail -n 5 "$RESULTS/wal-$tool-$run.err"; tail -n 5 "$spool/pusher.log" 2>/dev/null)"
  read -r t0 t1 t2 t3 <<<"$times"
  wait_pusher_gone "$spool"
  # check: every segment is in the repository
  local st
  # shellcheck disable=SC2046
  st="$(as_pg $(lb_env "$repo" "$spool") "$LB" pg status --json --pgdata "$DATA" 2>&1 | tail -n1)"
  echo "$st" >"$RESULTS/wal-$tool-$run.status.json"
  local archived newest
  archived="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["archived_files"])' "$st" 2>/dev/null || echo "?")"
  newest="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["newest_archived_segment"])' "$st" 2>/dev/null || echo "?")"
  [[ "$archived" == "$SEGMENTS" && "$newest" == "$(tail -n1 "$MEM/segments.txt")" ]] ||
    die "lifeboat run $run: pg status says archived_files=$archived newest=$newest (expected $SEGMENTS, $(tail -n1 "$MEM/segments.txt")): $st"
  cp "$spool/pusher.log" "$RESULTS/wal-$tool-$run.pusher.log" 2>/dev/null || true
  rec wal "$tool" "$run" push_s "$(dt "$t0" "$t1")"
  rec wal "$tool" "$run" drain_s "$(dt "$t1" "$t3")"
  rec wal "$tool" "$run" total_s "$(dt "$t0" "$t3")"
  rec wal "$tool" "$run" repo_bytes "$(bytes "$repo")"
  say "$tool WAL run $run: $SEGMENTS wal-push $(dt "$t0" "$t1") s, drain until stored $(dt "$t1" "$t3") s, total $(dt "$t0" "$t3") s, repository $(du -sh "$repo" | cut -f1)"
  rm -rf "$repo" "$spool"
}

wal_pgbr() { # wal_pgbr RUN CONFIG(tuned|async) TOOLNAME
  local run="$1" cfg="$2" tool="$3" times rc=0
  fresh_pgbr tuned
  sync
  note_load wal "$tool" "$run"
  # shellcheck disable=SC2016
  times="$(as_pg bash -c '
    set -e
    conf="$1" fake="$2" list="$3"
    t0=$(date +%s.%N)
    while read -r s; do pgbackrest --config="$conf" --stanza=bench --pg1-path="$fake" archive-push "$fake/pg_wal/$s"; done <"$list"
    t1=$(date +%s.%N)
    echo "$t0 $t1"' _ "$CONF/pgbr-$cfg.conf" "$FAKEPG" "$MEM/segments.txt" 2>"$RESULTS/wal-$tool-$run.err")" || rc=$?
  [[ $rc -eq 0 ]] || die "pgbackrest archive-push ($cfg) run $run failed (exit $rc): $(tail -n 5 "$RESULTS/wal-$tool-$run.err")"
  read -r t0 t1 <<<"$times"
  wait_pgbr_locks_free
  local n
  n=$(find "$PGBR_REPO/archive" -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}-[0-9a-f]{40}.*' | wc -l)
  [[ $n -eq $SEGMENTS ]] || die "pgBackRest ($cfg) run $run: $n segments in the repository, expected $SEGMENTS"
  rec wal "$tool" "$run" total_s "$(dt "$t0" "$t1")"
  rec wal "$tool" "$run" repo_bytes "$(bytes "$PGBR_REPO")"
  say "pgbackrest archive-push ($cfg) run $run: $(dt "$t0" "$t1") s, repository $(du -sh "$PGBR_REPO" | cut -f1)"
  rm -rf "$PGBR_REPO"
}

if has_phase wal; then
  say "== phase wal: $SEGMENTS segments, $RUNS run(s) each, alternated"
  # the spool holds a pusher batch at a time (20-30 segments seen), the repositories ~1.5 MiB a segment
  need_free $(( SEGMENTS * 10 + 500 )) "the WAL backlog (spool copies and repositories)"
  make_segments
  for run in $(seq "$RUNS"); do
    wal_lifeboat "$run"
    wal_pgbr "$run" tuned pgbackrest
    if [[ $ASYNC -eq 1 ]]; then wal_pgbr "$run" async pgbackrest-async; fi
  done
  if [[ $PERF -eq 1 ]]; then  # one more lifeboat run, under perf record (not in the medians)
    WRAP=(perf record -F 499 -q -o "$MEM/perf-wal.data" --)
    wal_lifeboat 1 lifeboat-perf
    WRAP=()
    perf_report "$MEM/perf-wal.data" "$RESULTS/perf-wal.txt"
  fi
  rm -rf "$WALSRC" "$FAKEPG"
fi

# ---------------------------------------------------------------- phase 3: lag under load
lag_run() { # lag_run RUN TOOL
  local run="$1" tool="$2" samples="$RESULTS/lag-$2-$1.jsonl" probe=() spoolarg=() envs=()
  if [[ $tool == lifeboat || $tool == lifeboat-spool ]]; then
    fresh_server_lb
    set_archive "$LB_ARCHIVE"
    # shellcheck disable=SC2207
    envs=($(lb_env "$LB_REPO" "$LB_SPOOL"))
    if [[ $tool == lifeboat ]]; then
      probe=("$LB" pg status --json --pgdata "$DATA")
    else
      probe=(true)   # the repository's state read from the spool's done/ records only
    fi
    spoolarg=(--spool "$LB_SPOOL")
  else
    fresh_pgbr tuned
    set_archive "$(pgbr_archive tuned)"
    probe=(pgbackrest --config="$CONF/pgbr-tuned.conf" --stanza=bench info --output=json)
  fi
  switch_and_wait
  if [[ $tool != pgbackrest ]]; then  # the pusher the switch started has stored its segment
    local until_s=$(( $(date +%s) + 60 ))
    until spool_empty "$LB_SPOOL" || [[ $(date +%s) -gt $until_s ]]; do sleep 0.1; done
  fi
  sync
  rm -f "$SCRATCH/stop-sampler"
  note_load lag "$tool" "$run"
  as_pg "${envs[@]}" python3 "$MEM/bin/helper.py" sample --out "$OUT/lag-$tool-$run.jsonl" --stop "$SCRATCH/stop-sampler" \
    --tool "$tool" --psql "$PGBIN/psql" --host "$SOCK" --port "$PORT" "${spoolarg[@]}" -- "${probe[@]}" \
    2>"$RESULTS/lag-$tool-$run.sampler.err" &
  BG_PIDS+=($!)
  local sampler=$!
  sleep 3
  local t0 t1 rc=0
  t0=$(now)
  as_pg "${pg_conn[@]}" timeout $(( LAG_SECONDS + 300 )) pgbench -c 2 -j 2 -T "$LAG_SECONDS" \
    >"$RESULTS/lag-$tool-$run.pgbench.log" 2>&1 || rc=$?
  t1=$(now)
  [[ $rc -eq 0 ]] || die "pgbench failed (exit $rc): $(tail -n 5 "$RESULTS/lag-$tool-$run.pgbench.log")"
  rec lag "$tool" "$run" pgbench_start "$t0"
  rec lag "$tool" "$run" pgbench_end "$t1"
  # keep sampling until the archive has caught up (at most 60 s more)
  local limit=$(( $(date +%s) + 60 ))
  while [[ $(date +%s) -lt $limit ]]; do
    if [[ "$(ready_count)" -eq 0 ]] && { [[ $tool == pgbackrest ]] || spool_empty "$LB_SPOOL"; }; then break; fi
    sleep 0.5
  done
  sleep 3
  touch "$SCRATCH/stop-sampler"
  wait "$sampler" || true
  cp "$OUT/lag-$tool-$run.jsonl" "$samples"
  local tps
  tps="$(awk '/^tps = / {print $3; exit}' "$RESULTS/lag-$tool-$run.pgbench.log")"
  if [[ -n "$tps" ]]; then rec lag "$tool" "$run" tps "$tps"; fi
  python3 "$HELPER" lagsum "$samples" "$t0" "$t1" lag "$tool" "$run" | tee -a "$TSV" |
    awk -F'\t' '{ printf "%s=%s ", $4, $5 } END { print "" }' | sed "s/^/[pg.sh] lag $tool run $run: tps=$tps /" >&2
  if [[ $tool != pgbackrest ]]; then
    cp "$LB_SPOOL/pusher.log" "$RESULTS/lag-$tool-$run.pusher.log" 2>/dev/null || true
  fi
}

if has_phase lag; then
  say "== phase lag: pgbench -c 2 -j 2 -T $LAG_SECONDS, $RUNS run(s)"
  # a run's repository: up to ~3 segments/s of WAL at ~1.5 MiB each compressed (renewed each run)
  need_free $(( LAG_SECONDS * 6 + 300 )) "the lag phase (a repository of $LAG_SECONDS s of pgbench WAL)"
  # lifeboat's default pusher idle time for this phase
  stop_server; SERVER_IDLE=""; start_server
  for run in $(seq "$RUNS"); do
    lag_run "$run" lifeboat
    if [[ $LAG_PGBR -eq 1 ]]; then lag_run "$run" pgbackrest; fi
    if [[ $LAG_SPOOL -eq 1 ]]; then lag_run "$run" lifeboat-spool; fi
  done
fi

# ---------------------------------------------------------------- report
{
  echo "# lifeboat vs pgBackRest, PostgreSQL 15 ($STAMP)"
  echo
  sed 's/^/    /' "$RESULTS/env.txt"
  echo
  python3 "$HELPER" report "$TSV"
  echo "pgBackRest configuration (tuned; the defaults run drops compress-*, cipher and process-max; the async run adds archive-async=y):"
  echo
  sed 's/^/    /' "$RESULTS/pgbackrest-tuned.conf"
} | tee "$RESULTS/report.md"
