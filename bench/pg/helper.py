#!/usr/bin/env python3
"""Helpers of bench/pg.sh (Python 3 standard library only).

  helper.py freeport                      a free TCP port on 127.0.0.1
  helper.py rss FILE                      peak RSS in KiB from a `/usr/bin/time -v` file
  helper.py sample --out F --stop F ...   the archive-lag sampler (runs as the postgres user)
  helper.py lagsum SAMPLES START END      lag figures of one run, as results.tsv lines
  helper.py report RESULTS.tsv            the Markdown report

results.tsv: one figure a line, `phase<TAB>tool<TAB>run<TAB>metric<TAB>value`.
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

SEG_RE = re.compile(r"^[0-9A-F]{24}$")


def segno(name, seg_mib=16):
    """Segment number of a WAL file name (timeline ignored)."""
    if not name or not SEG_RE.match(name):
        return None
    per_log = 0x100000000 // (seg_mib << 20)
    return int(name[8:16], 16) * per_log + int(name[16:24], 16)


# ------------------------------------------------------------------ small commands

def cmd_freeport(_args):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cmd_rss(args):
    try:
        with open(args[0]) as f:
            for line in f:
                if "Maximum resident set size" in line:
                    print(line.split(":")[-1].strip())
                    return
    except OSError:
        pass
    print("")


# ------------------------------------------------------------------ lag sampler

def run(cmd, timeout=30):
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr, time.time() - t0
    except subprocess.TimeoutExpired:
        return -1, "", "timeout", time.time() - t0


def cmd_sample(argv):
    """sample --out FILE --stop FILE --tool lifeboat|pgbackrest --psql PSQL --host H
    --port P [--spool DIR] [--interval 1] -- PROBE-COMMAND...

    Once per interval: the server's current WAL file and pg_stat_archiver's
    last_archived_wal (psql), then the tool's own view of its repository (the probe:
    `lifeboat pg status --json` or `pgbackrest info --output=json`), then the
    current WAL file again. One JSON object per line in FILE, until FILE --stop exists.
    """
    opts = {"interval": "1", "spool": ""}
    probe = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            probe = argv[i + 1:]
            break
        opts[a.lstrip("-")] = argv[i + 1]
        i += 2
    interval = float(opts["interval"])
    psql = [opts["psql"], "-h", opts["host"], "-p", opts["port"], "-U", "postgres",
            "-d", "postgres", "-XAtq", "-F", " ", "-c",
            "SELECT pg_walfile_name(pg_current_wal_lsn()), "
            "coalesce(last_archived_wal, '-'), failed_count FROM pg_stat_archiver"]
    out = open(opts["out"], "a", buffering=1)
    next_tick = time.time()
    while not os.path.exists(opts["stop"]):
        t = time.time()
        rec = {"t": t}
        rc, so, se, d = run(psql)
        if rc == 0 and so.strip():
            cur, last, failed = so.split()
            rec.update(cur_before=cur, last_archived_wal=last, failed_count=int(failed))
        else:
            rec["psql_error"] = (se or so).strip()[-300:]
        rc, so, se, d = run(probe, timeout=60)
        rec["probe_s"] = round(d, 3)
        if rc != 0:
            rec["probe_error"] = (se or so).strip()[-300:]
        elif opts["tool"] == "lifeboat-spool":
            pass
        elif opts["tool"] == "lifeboat":
            try:
                js = json.loads(so.strip().splitlines()[-1])
                rec["spooled_files"] = js.get("spooled_files")
                rec["newest_stored"] = js.get("newest_archived_segment")
                rec["pusher_running"] = js.get("pusher_running")
            except (ValueError, IndexError) as e:
                rec["probe_error"] = "unparsable: %s %r" % (e, so[-200:])
        else:
            try:
                js = json.loads(so)
                mx = None
                for arch in js[0].get("archive", []):
                    if arch.get("max"):
                        mx = max(mx or "", arch["max"])
                rec["newest_stored"] = mx
            except (ValueError, IndexError, KeyError, TypeError) as e:
                rec["probe_error"] = "unparsable: %s %r" % (e, so[-200:])
        if opts["spool"]:
            # lifeboat's spool, read directly (cheap): done/NAME is written once NAME is
            # stored in the repository; ready/ holds what is still only in the spool.
            try:
                done = [n for n in os.listdir(os.path.join(opts["spool"], "done"))
                        if SEG_RE.match(n)]
                rec["spool_done_newest"] = max(done) if done else None
                rec["spool_ready"] = len(os.listdir(os.path.join(opts["spool"], "ready")))
                if opts["tool"] == "lifeboat-spool":
                    rec["newest_stored"] = rec["spool_done_newest"]
            except OSError as e:
                rec["spool_error"] = str(e)
        rc, so, se, d = run(psql)
        if rc == 0 and so.strip():
            rec["cur_after"] = so.split()[0]
        rec["t_end"] = time.time()
        out.write(json.dumps(rec) + "\n")
        next_tick += interval
        pause = next_tick - time.time()
        if pause > 0:
            time.sleep(pause)
        else:
            next_tick = time.time()  # a slow sample: the next one starts at once


def cmd_lagsum(args):
    """lagsum SAMPLES START END PHASE TOOL RUN: results.tsv lines of one lag run.

    lag = current segment (read after the probe, so never understated) minus the newest
    segment the probe found in the repository; the samples taken while pgbench ran
    (START..END, epoch seconds) count.
    """
    path, start, end, phase, tool, run_no = args
    start, end = float(start), float(end)
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    win = [r for r in rows if start <= r["t"] <= end]
    lags, lags_lo, lags_spool, lags_archiver, probe = [], [], [], [], []
    errors = 0
    for r in win:
        cur = segno(r.get("cur_after") or r.get("cur_before"))
        before = segno(r.get("cur_before"))
        if "probe_error" in r or "psql_error" in r:
            errors += 1
        probe.append(r.get("probe_s", 0))
        # pg_stat_archiver against the current segment of the same query
        la = segno(r.get("last_archived_wal"))
        if la is not None and before is not None:
            lags_archiver.append(before - la)
        if cur is None:
            continue
        new = segno(r.get("newest_stored"))
        if new is not None:
            lags.append(cur - new)
            if before is not None:
                lags_lo.append(before - new)  # a lower bound: the probe read the repository later
        if "spool_done_newest" in r and segno(r.get("spool_done_newest")) is not None:
            lags_spool.append(cur - segno(r["spool_done_newest"]))
    out = []

    def emit(metric, value):
        if value is not None:
            out.append("\t".join([phase, tool, run_no, metric, str(value)]))

    emit("samples", len(win))
    emit("sample_errors", errors)
    if lags:
        emit("lag_max", max(lags))
        emit("lag_median", statistics.median(lags))
        emit("lag_samples_ge3", sum(1 for x in lags if x >= 3))
    if lags_lo:
        emit("lag_lo_max", max(lags_lo))
        emit("lag_lo_median", statistics.median(lags_lo))
        emit("lag_lo_samples_ge3", sum(1 for x in lags_lo if x >= 3))
    if lags_spool:
        emit("lag_spool_max", max(lags_spool))
        emit("lag_spool_median", statistics.median(lags_spool))
    if lags_archiver:
        emit("lag_archiver_max", max(lags_archiver))
        emit("lag_archiver_median", statistics.median(lags_archiver))
    if probe:
        emit("probe_s_median", round(statistics.median(probe), 3))
        emit("probe_s_max", round(max(probe), 3))
    spooled = [r["spooled_files"] for r in win if isinstance(r.get("spooled_files"), int)]
    if spooled:
        emit("spooled_max", max(spooled))
    # WAL rate over the window, from the first and last current-segment readings
    cs = [(r["t"], segno(r.get("cur_before"))) for r in win if segno(r.get("cur_before")) is not None]
    if len(cs) >= 2 and cs[-1][0] > cs[0][0]:
        emit("wal_segments_per_min", round((cs[-1][1] - cs[0][1]) * 60.0 / (cs[-1][0] - cs[0][0]), 1))
    # catch-up after pgbench stopped: first sample after END with lag <= 1
    after = [r for r in rows if r["t"] > end]
    for r in after:
        cur = segno(r.get("cur_after") or r.get("cur_before"))
        new = segno(r.get("newest_stored"))
        if cur is not None and new is not None and cur - new <= 1:
            emit("catchup_s", round(r["t_end"] - end, 1))
            break
    print("\n".join(out))


# ------------------------------------------------------------------ report

def load(path):
    data = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            phase, tool, run_no, metric, value = parts
            try:
                v = float(value)
            except ValueError:
                continue
            data.setdefault((phase, tool, metric), []).append((int(run_no), v))
    return data


def fmt(v, unit=""):
    if v is None:
        return "—"
    if unit == "MiB":
        return "%.0f" % v if v >= 10 else "%.1f" % v
    if unit == "int":
        return "%d" % round(v)
    if abs(v) >= 100:
        return "%.0f" % v
    return "%.1f" % v if abs(v) >= 10 else "%.2f" % v


def cmd_report(args):
    data = load(args[0])

    def vals(phase, tool, metric, scale=1.0):
        return [v * scale for _, v in sorted(data.get((phase, tool, metric), []))]

    def med(phase, tool, metric, scale=1.0):
        v = vals(phase, tool, metric, scale)
        return statistics.median(v) if v else None

    def cell(phase, tool, metric, unit="", scale=1.0):
        v = vals(phase, tool, metric, scale)
        if not v:
            return "—"
        m = statistics.median(v)
        if len(v) == 1:
            return fmt(m, unit)
        return "%s (%s)" % (fmt(m, unit), ", ".join(fmt(x, unit) for x in v))

    def ratio(a, b):
        return None if a is None or b is None or b <= 0 else a / b

    def rcell(r):
        return "—" if r is None else "%.2f×" % r

    def met(r, limit):
        if r is None:
            return "n/a"
        return "yes" if r <= limit else "**no**"

    lines = []
    P = lines.append
    MiB = 1.0 / (1 << 20)
    KiB2MiB = 1.0 / 1024

    # ---- base backup
    if any(k[0] == "backup" for k in data):
        P("## Base backup (pgbench scale %s)\n" % fmt(med("setup", "-", "scale") or 0, "int"))
        P("Median of the runs (the runs in brackets, in order); ratio = lifeboat / pgBackRest (tuned).\n")
        P("| measurement | lifeboat | pgBackRest (zst-3, aes-256-cbc, process-max=2) | ratio | target | met |")
        P("|---|---|---|---|---|---|")
        lb, pb = med("backup", "lifeboat", "wall_s"), med("backup", "pgbackrest", "wall_s")
        r = ratio(lb, pb)
        P("| wall time, s | %s | %s | %s | ≤0.80× | %s |" % (
            cell("backup", "lifeboat", "wall_s"), cell("backup", "pgbackrest", "wall_s"), rcell(r), met(r, 0.8)))
        lbw = med("backup", "lifeboat", "wall_plus_wal_s")
        r2 = ratio(lbw, pb)
        P("| lifeboat until its stop segment is in the repository too, s | %s | (pgBackRest's backup includes it) | %s | — | — |" % (
            cell("backup", "lifeboat", "wall_plus_wal_s"), rcell(r2)))
        P("| peak RSS, MiB | %s | %s | %s | — | — |" % (
            cell("backup", "lifeboat", "rss_kib", "MiB", KiB2MiB), cell("backup", "pgbackrest", "rss_kib", "MiB", KiB2MiB),
            rcell(ratio(med("backup", "lifeboat", "rss_kib"), med("backup", "pgbackrest", "rss_kib")))))
        P("| CPU time (user+sys), s | %s | %s | %s | — | — |" % (
            cell("backup", "lifeboat", "cpu_s"), cell("backup", "pgbackrest", "cpu_s"),
            rcell(ratio(med("backup", "lifeboat", "cpu_s"), med("backup", "pgbackrest", "cpu_s")))))
        P("| repository after the backup, MiB | %s | %s | %s | — | — |" % (
            cell("backup", "lifeboat", "repo_bytes", "MiB", MiB), cell("backup", "pgbackrest", "repo_bytes", "MiB", MiB),
            rcell(ratio(med("backup", "lifeboat", "repo_bytes"), med("backup", "pgbackrest", "repo_bytes")))))
        for name, label in (("floor-stream", "floor: pg_basebackup -Ft -X fetch --manifest-checksums=NONE --checkpoint=fast > /dev/null, s"),
                            ("floor-zstd", "floor: the same piped into zstd -3 -T2 > /dev/null, s")):
            if ("backup", name, "wall_s") in data:
                f = med("backup", name, "wall_s")
                P("| %s %s | %s of it | %s of it | — | — | — |" % (
                    label, cell("backup", name, "wall_s"), rcell(ratio(lb, f)), rcell(ratio(pb, f))))
        if ("backup", "pgbackrest", "backup_dir_bytes") in data:
            P("| of which pgBackRest backup/ (rest: archive/ and info), MiB | | %s | | | |" % (
                cell("backup", "pgbackrest", "backup_dir_bytes", "MiB", MiB)))
        if ("backup", "pgbackrest-defaults", "wall_s") in data:
            d = med("backup", "pgbackrest-defaults", "wall_s")
            P("| pgBackRest defaults (gz-6, process-max=1, no cipher; start-fast=y), s | | %s | %s | orientation | — |" % (
                cell("backup", "pgbackrest-defaults", "wall_s"), rcell(ratio(lb, d))))
            P("| pgBackRest defaults: repository, MiB / peak RSS, MiB | | %s / %s | | | |" % (
                cell("backup", "pgbackrest-defaults", "repo_bytes", "MiB", MiB),
                cell("backup", "pgbackrest-defaults", "rss_kib", "MiB", KiB2MiB)))
        P("")

    # ---- WAL backlog
    if any(k[0] == "wal" for k in data):
        n = fmt(med("setup", "-", "segments") or 0, "int")
        P("## WAL backlog (%s segments of 16 MiB)\n" % n)
        P("| measurement | lifeboat | pgBackRest sync | ratio | target | met |")
        P("|---|---|---|---|---|---|")
        lb, pb = med("wal", "lifeboat", "total_s"), med("wal", "pgbackrest", "total_s")
        r = ratio(lb, pb)
        P("| end to end until all stored, s | %s | %s | %s | ≤0.80× | %s |" % (
            cell("wal", "lifeboat", "total_s"), cell("wal", "pgbackrest", "total_s"), rcell(r), met(r, 0.8)))
        P("| lifeboat: the %s `wal-push` calls (what the server waits for), s | %s | | %s | — | — |" % (
            n, cell("wal", "lifeboat", "push_s"), rcell(ratio(med("wal", "lifeboat", "push_s"), pb))))
        P("| lifeboat: `wal-push --drain`, then until the spool is empty, s | %s | | | | |" % (
            cell("wal", "lifeboat", "drain_s")))
        if ("wal", "pgbackrest-async", "total_s") in data:
            a = med("wal", "pgbackrest-async", "total_s")
            P("| pgBackRest archive-async=y, process-max=2: end to end, s | | %s | %s | (≤0.80×) | %s |" % (
                cell("wal", "pgbackrest-async", "total_s"), rcell(ratio(lb, a)), met(ratio(lb, a), 0.8)))
        P("| repository after, MiB | %s | %s | %s | — | — |" % (
            cell("wal", "lifeboat", "repo_bytes", "MiB", MiB), cell("wal", "pgbackrest", "repo_bytes", "MiB", MiB),
            rcell(ratio(med("wal", "lifeboat", "repo_bytes"), med("wal", "pgbackrest", "repo_bytes")))))
        if ("wal", "pgbackrest-async", "repo_bytes") in data:
            P("| pgBackRest async: repository after, MiB | | %s | | | |" % (
                cell("wal", "pgbackrest-async", "repo_bytes", "MiB", MiB)))
        P("")

    # ---- lag
    if any(k[0] == "lag" for k in data):
        P("## Archive lag under load (pgbench -c 2 -j 2 -T %s)\n" % fmt(med("setup", "-", "lag_seconds") or 0, "int"))
        P("lag = current WAL segment (read after the probe) − newest segment in the repository. Probe once a "
          "second: lifeboat `pg status --json` (newest_archived_segment); lifeboat, spool only: the newest "
          "`done/` record of the spool (written once a segment is stored), no status call; pgBackRest: "
          "`info --output=json` (archive max).\n")
        tools = [t for t in ("lifeboat", "lifeboat-spool", "pgbackrest") if ("lag", t, "samples") in data]
        heads = {"lifeboat": "lifeboat (status probe)", "lifeboat-spool": "lifeboat (spool probe)",
                 "pgbackrest": "pgBackRest sync (orientation)"}
        P("| measurement | %s | target | met |" % " | ".join(heads[t] for t in tools))
        P("|---|%s---|---|" % ("---|" * len(tools)))

        def row(label, metric, unit="", target="—", verdict="—"):
            P("| %s | %s | %s | %s |" % (label, " | ".join(cell("lag", t, metric, unit) for t in tools), target, verdict))

        lbmax = vals("lag", "lifeboat", "lag_max") + vals("lag", "lifeboat-spool", "lag_max")
        row("max lag, segments", "lag_max", "int", "<3 (lifeboat)",
            "n/a" if not lbmax else ("yes" if max(lbmax) < 3 else "**no**"))
        row("median lag, segments", "lag_median")
        row("samples with lag ≥ 3", "lag_samples_ge3", "int")
        row("lower bound (current segment read before the probe): max lag", "lag_lo_max", "int")
        row("lower bound: samples with lag ≥ 3", "lag_lo_samples_ge3", "int")
        row("samples", "samples", "int")
        row("lag from lifeboat's spool done/ records, max", "lag_spool_max", "int")
        row("current segment − pg_stat_archiver.last_archived_wal (same query), max", "lag_archiver_max", "int")
        row("lifeboat spooled_files (status), max", "spooled_max", "int")
        row("WAL rate, segments/min", "wal_segments_per_min")
        row("pgbench tps", "tps", "int")
        row("probe duration, median s", "probe_s_median")
        row("catch-up after pgbench stopped (lag ≤ 1), s", "catchup_s")
        P("")

    # ---- load
    loads = [(k, v) for k, v in data.items() if k[2] == "load1"]
    if loads:
        P("## Machine load before each measured run\n")
        P("1-minute loadavg / CPU busy % in the second before the run (2 cores) / rustc, cargo, cc, ld processes running; run by run.\n")
        P("| phase | tool | runs |")
        P("|---|---|---|")
        for (phase, tool, _), v in sorted(loads):
            busy = dict(data.get((phase, tool, "cpu_busy_pct"), []))
            comp = dict(data.get((phase, tool, "compilers"), []))
            P("| %s | %s | %s |" % (phase, tool, ", ".join(
                "%.2f / %s%% / %s" % (x, fmt(busy.get(r), "int"), fmt(comp.get(r), "int")) for r, x in sorted(v))))
        P("")
    print("\n".join(lines))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"freeport": cmd_freeport, "rss": cmd_rss, "sample": cmd_sample,
     "lagsum": cmd_lagsum, "report": cmd_report}[cmd](args)


if __name__ == "__main__":
    main()
