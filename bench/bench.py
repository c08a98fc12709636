#!/usr/bin/env python3
"""Timing / RSS / size driver for the lifeboat benchmark (stdlib only).

Normally started by bench/run.sh, which installs the tools and prepares the
datasets first.  Direct use:

    bench/bench.py --dataset NAME=DIR [--dataset NAME=DIR ...] [--runs 3]
                   [--tools lifeboat,restic,borg,rustic,bupstash]
                   [--scratch /tmp/lifeboat-bench] [--results-dir bench/results]
                   [--lifeboat-bin PATH] [--no-floors] [--timeout 3600]

For every dataset and every run (fresh repository each run) and tool:
  initial backup  -> timed, peak RSS, then repository size (du -sb)
  unchanged backup-> second backup of the same, untouched tree; timed, RSS
  restore         -> restore of the latest snapshot into an empty dir; timed,
                     RSS, then checked (regular file count and bytes)
and the machine floors (read, stat walk, compress, write) on the same tree.

Wall time is measured around the child.  Peak RSS is per command, never
cumulative: the larger of `/usr/bin/time -f %M` (ru_maxrss of the command,
i.e. its largest single process) and the peak of the summed RSS of all the
command's processes sampled every 0.1 s (catches helpers such as
`bupstash serve` and the parts of a pipeline).

The Markdown report goes to stdout, progress to stderr, raw results to
RESULTS_DIR/<dataset>-<date>.json.
"""

import argparse
import datetime
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1 << 20
ALL_TOOLS = ["lifeboat", "restic", "borg", "rustic", "bupstash"]
PEERS = ["restic", "borg", "rustic", "bupstash"]
PHASES = ["initial", "unchanged", "restore"]
PHASE_LABEL = {"initial": "initial backup", "unchanged": "unchanged re-backup",
               "restore": "full restore"}
FLOORS = ["read", "stat", "compress", "write"]
FLOOR_LABEL = {
    "read": "read: `tar cf - DIR | cat >/dev/null`",
    "stat": "stat walk: `find DIR -printf '%s %T@ %C@ %i\\n' >/dev/null`",
    "compress": "compress: `tar cf - DIR | zstd -3 -T2 >/dev/null`",
    "write": "write: `cp -a DIR T`",
}
# phase -> floor it is compared with
PHASE_FLOOR = {"initial": "compress", "unchanged": "stat", "restore": "write"}
SCRATCH_MARK = ".lifeboat-bench-scratch"
PASSWORD = "bench-password"
STRIP_ENV = re.compile(r"^(RESTIC_|BORG_|RUSTIC_|BUPSTASH_|LIFEBOAT_)")


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def q(s):
    return shlex.quote(str(s))


# --------------------------------------------------------------------------
# running one command


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
GNU_TIME = "/usr/bin/time"


class TreeRss(threading.Thread):
    """Samples, every `interval` seconds, the summed RSS of all processes in
    session `sid` (the child and everything it started: bupstash's
    `bupstash serve` helper, the parts of a shell pipeline) and keeps the peak.
    ru_maxrss alone gives the largest single process, not the sum."""

    def __init__(self, sid, interval=0.1, skip_pid=None):
        super().__init__(daemon=True)
        self.sid = sid
        self.skip = str(skip_pid)
        self.interval = interval
        self.peak_kib = 0
        self.stop = threading.Event()

    def sample(self):
        total = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or name == self.skip:
                continue
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2:].split()
            # fields[0] is field 3 (state): session is field 6, rss (pages) field 24
            if len(fields) > 21 and int(fields[3]) == self.sid:
                total += int(fields[21]) * PAGE_KIB
        self.peak_kib = max(self.peak_kib, total)

    def run(self):
        while True:
            self.sample()
            if self.stop.wait(self.interval):
                return


def run_cmd(cmd, env=None, cwd=None, out_path=None, err_path=None, timeout=3600):
    """Run cmd (argv list, or a str for bash -c).  Returns a dict with rc,
    seconds (wall), rss_kib (ru_maxrss as /usr/bin/time -f %M reports it: the
    largest single process of the command's tree), tree_rss_kib (sampled peak
    of the tree's summed RSS), peak_kib (the larger of the two), timed_out."""
    if isinstance(cmd, str):
        argv = ["bash", "-o", "pipefail", "-c", cmd]
    else:
        argv = [str(a) for a in cmd]
    # GNU time execs the command from its own small process and reports its
    # ru_maxrss.  Taken directly from a child of this Python process, ru_maxrss
    # would never be below Python's own RSS (the pre-exec copy counts).
    time_out = None
    if os.access(GNU_TIME, os.X_OK):
        fd, time_out = tempfile.mkstemp(prefix="bench-time-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", time_out] + argv
    out = open(out_path, "wb") if out_path else subprocess.DEVNULL
    err = open(err_path, "wb") if err_path else subprocess.DEVNULL
    timed_out = [False]
    try:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err, start_new_session=True)

        def kill():
            timed_out[0] = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        sampler = TreeRss(p.pid, skip_pid=p.pid if time_out else None)
        sampler.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            # e.g. Ctrl-C: the child runs in its own session, so end it here
            os.killpg(p.pid, signal.SIGKILL)
            os.wait4(p.pid, 0)
            p.returncode = -9
            raise
        finally:
            timer.cancel()
            sampler.stop.set()
        seconds = time.monotonic() - t0
        sampler.join()
        p.returncode = os.waitstatus_to_exitcode(status)
        rss = ru.ru_maxrss
        if time_out:
            try:
                with open(time_out) as f:
                    last = f.read().split()
                rss = int(last[-1])
            except (OSError, ValueError, IndexError):
                pass  # killed before time could report: keep wait4's figure
    finally:
        if out_path:
            out.close()
        if err_path:
            err.close()
        if time_out:
            os.remove(time_out)
    return {"rc": p.returncode, "seconds": seconds, "rss_kib": rss,
            "tree_rss_kib": sampler.peak_kib, "peak_kib": max(rss, sampler.peak_kib),
            "timed_out": timed_out[0]}


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def capture(argv, env=None, timeout=20):
    """Output of a short command (versions, git); its whole process group is
    killed after timeout seconds."""
    try:
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return "error: %s" % e
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "error: timed out after %ds" % timeout
    return out.decode("utf-8", "replace").strip()


def du_bytes(path):
    r = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return int(r.stdout.split()[0])


def tree_stats(path):
    """(regular files, total bytes of regular files) under path."""
    files = 0
    nbytes = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_mode & 0o170000) == 0o100000:
                files += 1
                nbytes += st.st_size
    return files, nbytes


def rmtree(path):
    if os.path.lexists(path):
        # restored trees can contain read-only dirs; make them writable first
        subprocess.run(["chmod", "-R", "u+rwX", str(path)], stderr=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)])


def which(name):
    p = shutil.which(name)
    if p:
        return p
    p = os.path.expanduser("~/.cargo/bin/" + name)
    return p if os.access(p, os.X_OK) else None


# --------------------------------------------------------------------------
# tools


class Ctx:
    """Per (tool, run) scratch directory layout."""

    def __init__(self, base, data):
        self.base = base
        self.repo = os.path.join(base, "repo")
        self.target = os.path.join(base, "restore")
        self.home = os.path.join(base, "home")
        self.cache = os.path.join(base, "cache")
        self.config = os.path.join(base, "config")
        self.data = data  # dataset directory (absolute, read only)
        self.vars = {}

    def make(self):
        for d in (self.home, self.cache, self.config, self.target):
            os.makedirs(d, exist_ok=True)

    def env(self, extra):
        env = {k: v for k, v in os.environ.items() if not STRIP_ENV.match(k)}
        env.update(HOME=self.home, XDG_CACHE_HOME=self.cache, XDG_CONFIG_HOME=self.config,
                   XDG_DATA_HOME=os.path.join(self.home, ".local", "share"), LC_ALL="C.UTF-8")
        env.update(extra)
        return env


class Tool:
    name = "?"
    binary = None

    def __init__(self, binary):
        self.binary = binary

    def version(self):
        return "?"

    def env(self, ctx):
        return {}

    def init_cmds(self, ctx):
        return []

    def backup_cmd(self, ctx, n):
        raise NotImplementedError

    def after_backup(self, ctx, n, out_path):
        pass

    def restore_cmd(self, ctx):
        raise NotImplementedError

    def restore_cwd(self, ctx):
        return None

    def commands_doc(self):
        return []


class Lifeboat(Tool):
    name = "lifeboat"

    def version(self):
        if not self.binary:
            return "n/a"
        out = capture([self.binary, "--version"]).splitlines()
        return out[0] if out else "? (--version printed nothing)"

    def env(self, ctx):
        return {"LIFEBOAT_PASSWORD": PASSWORD}

    def init_cmds(self, ctx):
        return [[self.binary, "--repo", ctx.repo, "init"]]

    def backup_cmd(self, ctx, n):
        return [self.binary, "--repo", ctx.repo, "backup", ctx.data, "--quiet"]

    def restore_cmd(self, ctx):
        return [self.binary, "--repo", ctx.repo, "restore", "latest", "--target", ctx.target,
                "--quiet"]

    def commands_doc(self):
        return ["lifeboat --repo R init", "lifeboat --repo R backup DIR --quiet  (twice)",
                "lifeboat --repo R restore latest --target T --quiet"]


class Restic(Tool):
    name = "restic"

    def version(self):
        return capture([self.binary, "version"])

    def env(self, ctx):
        return {"RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": ctx.repo,
                "RESTIC_CACHE_DIR": os.path.join(ctx.cache, "restic")}

    def init_cmds(self, ctx):
        return [[self.binary, "init"]]

    def backup_cmd(self, ctx, n):
        return [self.binary, "backup", ctx.data]

    def restore_cmd(self, ctx):
        return [self.binary, "restore", "latest", "--target", ctx.target]

    def commands_doc(self):
        return ["restic init", "restic backup DIR  (twice; the 2nd finds the 1st as parent)",
                "restic restore latest --target T"]


class Borg(Tool):
    name = "borg"

    def version(self):
        return capture([self.binary, "--version"])

    def env(self, ctx):
        return {"BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": os.path.join(ctx.base, "borgbase"),
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_DISPLAY_PASSPHRASE": "no"}

    def init_cmds(self, ctx):
        return [[self.binary, "init", "--encryption=repokey-blake2", ctx.repo]]

    def backup_cmd(self, ctx, n):
        return [self.binary, "create", "--compression", "zstd,3",
                "%s::backup%d" % (ctx.repo, n), ctx.data]

    def restore_cmd(self, ctx):
        return [self.binary, "extract", "%s::backup2" % ctx.repo]

    def restore_cwd(self, ctx):
        return ctx.target

    def commands_doc(self):
        return ["borg init --encryption=repokey-blake2 R",
                "borg create --compression zstd,3 R::backup1 DIR",
                "borg create --compression zstd,3 R::backup2 DIR",
                "cd T && borg extract R::backup2"]


class Rustic(Tool):
    name = "rustic"

    def version(self):
        return capture([self.binary, "--version"])

    def env(self, ctx):
        return {"RUSTIC_PASSWORD": PASSWORD, "RUSTIC_NO_PROGRESS": "true",
                "RUSTIC_CACHE_DIR": os.path.join(ctx.cache, "rustic")}

    def init_cmds(self, ctx):
        return [[self.binary, "-r", ctx.repo, "init"]]

    def backup_cmd(self, ctx, n):
        return [self.binary, "-r", ctx.repo, "backup", ctx.data]

    def restore_cmd(self, ctx):
        return [self.binary, "-r", ctx.repo, "restore", "latest", ctx.target]

    def commands_doc(self):
        return ["rustic -r R init", "rustic -r R backup DIR  (twice)",
                "rustic -r R restore latest T"]


class Bupstash(Tool):
    name = "bupstash"

    def version(self):
        return capture([self.binary, "version"])

    def env(self, ctx):
        return {"BUPSTASH_REPOSITORY": ctx.repo, "BUPSTASH_KEY": os.path.join(ctx.base, "bench.key"),
                "BUPSTASH_SEND_LOG": os.path.join(ctx.cache, "bupstash", "bupstash.sendlog")}

    def init_cmds(self, ctx):
        os.makedirs(os.path.join(ctx.cache, "bupstash"), exist_ok=True)
        return [[self.binary, "new-key", "-o", os.path.join(ctx.base, "bench.key")],
                [self.binary, "init"]]

    def backup_cmd(self, ctx, n):
        return [self.binary, "put", ctx.data]

    def after_backup(self, ctx, n, out_path):
        ids = re.findall(r"[0-9a-f]{32}", tail(out_path, 5))
        if ids:
            ctx.vars["last_id"] = ids[-1]

    def restore_cmd(self, ctx):
        return [self.binary, "restore", "--into", ctx.target,
                "id=%s" % ctx.vars.get("last_id", "missing")]

    def commands_doc(self):
        return ["bupstash new-key -o KEY; bupstash init  (BUPSTASH_KEY, BUPSTASH_REPOSITORY)",
                "bupstash put DIR  (twice; default send log, kept between the two)",
                "bupstash restore --into T id=<id printed by the 2nd put>"]


TOOL_CLASSES = {c.name: c for c in (Lifeboat, Restic, Borg, Rustic, Bupstash)}


# --------------------------------------------------------------------------
# floors


def floor_cmd(name, data, dest):
    parent, base = os.path.split(data.rstrip("/"))
    tar = "tar cf - -C %s %s" % (q(parent), q(base))
    return {
        "read": "%s | cat >/dev/null" % tar,
        "stat": "find %s -printf '%%s %%T@ %%C@ %%i\\n' >/dev/null" % q(data),
        "compress": "%s | zstd -3 -T2 >/dev/null" % tar,
        "write": "cp -a %s %s" % (q(data), q(dest)),
    }[name]


# --------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.scratch = os.path.abspath(args.scratch)
        self.stamp = datetime.datetime.now()
        self.logdir = os.path.join(os.path.abspath(args.results_dir), "logs",
                                   self.stamp.strftime("%Y-%m-%d-%H%M%S"))
        self.tools = []
        for name in args.tools:
            if name == "lifeboat":
                b = args.lifeboat_bin
                binary = b if (b and os.path.isfile(b) and os.access(b, os.X_OK)) else None
            else:
                binary = which(name)
            self.tools.append(TOOL_CLASSES[name](binary))

    # ---- scratch handling: only ever delete below a dir we marked as ours
    def prepare_scratch(self):
        if os.path.isdir(self.scratch) and os.listdir(self.scratch) and \
                not os.path.exists(os.path.join(self.scratch, SCRATCH_MARK)):
            sys.exit("scratch dir %s exists, is not empty and was not made by bench; "
                     "refusing to use it" % self.scratch)
        os.makedirs(self.scratch, exist_ok=True)
        # hold a lock on the marker for the whole run: two benchmarks sharing a
        # scratch dir would delete each other's repositories
        self.lock = open(os.path.join(self.scratch, SCRATCH_MARK), "w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit("another benchmark is running in %s; use --scratch DIR" % self.scratch)

    def wipe(self, path):
        assert os.path.abspath(path).startswith(self.scratch + os.sep)
        rmtree(path)

    def header(self):
        mem_kib = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        root = self.args.repo_root
        commit = capture(["git", "-C", root, "rev-parse", "--short=12", "HEAD"])
        if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
            commit = "none (no commit yet)"
        dirty = capture(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
        if dirty and not dirty.startswith("error") and "fatal" not in dirty:
            commit += " (+uncommitted changes)"
        versions = {}
        for t in self.tools:
            versions[t.name] = t.version() if t.binary else "n/a (not installed)"
        for t in self.tools:
            if t.name == "lifeboat" and t.binary:
                mtime = datetime.datetime.fromtimestamp(os.path.getmtime(t.binary))
                versions["lifeboat"] += " (binary %s, modified %s)" % (
                    t.binary, mtime.isoformat(timespec="seconds"))
        versions["zstd"] = capture(["zstd", "--version"])
        versions["tar"] = capture(["tar", "--version"]).splitlines()[0]
        versions["kernel"] = platform.release()
        return {
            "date": self.stamp.isoformat(timespec="seconds"),
            "nproc": os.cpu_count(),
            "mem_gib": round(mem_kib / (1 << 20), 1),
            "cpu": cpu,
            "commit": commit,
            "versions": versions,
            "runs": self.args.runs,
            "scratch": self.scratch,
        }

    def warm(self, data):
        log("warming page cache: tar cf - %s | cat >/dev/null" % data)
        run_cmd(floor_cmd("read", data, None), timeout=self.args.timeout)

    def timed(self, cmd, env, cwd, logbase):
        os.sync()  # flush the previous phase's writes so they do not land in this timing
        r = run_cmd(cmd, env=env, cwd=cwd, out_path=logbase + ".out", err_path=logbase + ".err",
                    timeout=self.args.timeout)
        r["log"] = logbase
        return r

    def one_tool_run(self, tool, data, dsname, run, src_stats):
        base = os.path.join(self.scratch, dsname, "%s-run%d" % (tool.name, run))
        self.wipe(base)
        ctx = Ctx(base, data)
        ctx.make()
        env = ctx.env(tool.env(ctx))
        logpre = os.path.join(self.logdir, dsname, "%s-run%d" % (tool.name, run))
        os.makedirs(os.path.dirname(logpre), exist_ok=True)
        res = {"run": run}

        def failed(phase, r):
            msg = "exit %s%s" % (r["rc"], " (timeout)" if r["timed_out"] else "")
            log("%s %s FAILED: %s; stderr tail:\n%s" % (tool.name, phase, msg,
                                                       tail(r["log"] + ".err") or
                                                       tail(r["log"] + ".out")))
            res["error"] = "%s: %s" % (phase, msg)
            res["error_tail"] = tail(r["log"] + ".err") or tail(r["log"] + ".out")

        try:
            for i, cmd in enumerate(tool.init_cmds(ctx)):
                r = self.timed(cmd, env, ctx.base, "%s-init%d" % (logpre, i))
                res.setdefault("init", []).append(r)
                if r["rc"] != 0:
                    failed("init", r)
                    return res
            for n, phase in ((1, "initial"), (2, "unchanged")):
                r = self.timed(tool.backup_cmd(ctx, n), env, ctx.base, "%s-%s" % (logpre, phase))
                res[phase] = r
                if r["rc"] != 0:
                    failed(phase, r)
                    return res
                tool.after_backup(ctx, n, r["log"] + ".out")
                if phase == "initial":
                    res["repo_bytes"] = du_bytes(ctx.repo)
                log("%s run %d %s: %.2fs, %.0f MiB RSS" % (tool.name, run, phase, r["seconds"],
                                                          r["peak_kib"] / 1024))
            r = self.timed(tool.restore_cmd(ctx), env, tool.restore_cwd(ctx) or ctx.base,
                           "%s-restore" % logpre)
            res["restore"] = r
            if r["rc"] != 0:
                failed("restore", r)
                return res
            log("%s run %d restore: %.2fs, %.0f MiB RSS" % (tool.name, run, r["seconds"],
                                                           r["peak_kib"] / 1024))
            got = tree_stats(ctx.target)
            res["verify"] = {"files": got[0], "bytes": got[1],
                             "ok": list(got) == list(src_stats)}
            if not res["verify"]["ok"]:
                log("%s run %d: restored tree differs: %d files / %d bytes, source %d / %d"
                    % (tool.name, run, got[0], got[1], src_stats[0], src_stats[1]))
            return res
        finally:
            self.wipe(base)

    def floors_run(self, data, dsname, run):
        out = {}
        base = os.path.join(self.scratch, dsname, "floor-run%d" % run)
        self.wipe(base)
        os.makedirs(base)
        logpre = os.path.join(self.logdir, dsname, "floor-run%d" % run)
        os.makedirs(os.path.dirname(logpre), exist_ok=True)
        try:
            for f in FLOORS:
                dest = os.path.join(base, "cp-target")
                r = self.timed(floor_cmd(f, data, dest), None, None, "%s-%s" % (logpre, f))
                out[f] = r
                if r["rc"] != 0:
                    log("floor %s FAILED (exit %s): %s" % (f, r["rc"], tail(r["log"] + ".err")))
                else:
                    log("floor %s run %d: %.2fs" % (f, run, r["seconds"]))
        finally:
            self.wipe(base)
        return out

    def run_dataset(self, dsname, data):
        data = os.path.abspath(data)
        label = dsname
        if dsname == "generated":
            stamp = data + ".stamp"
            if os.path.exists(stamp):
                with open(stamp) as f:
                    st = json.load(f)
                label = "generated (scale=%s, seed=%s)" % (st.get("scale"), st.get("seed"))
        log("dataset %s: %s" % (label, data))
        src_stats = tree_stats(data)
        ds = {"name": dsname, "label": label, "path": data, "files": src_stats[0],
              "file_bytes": src_stats[1], "du_bytes": du_bytes(data)}
        self.warm(data)
        # reference size: what plain tar | zstd -3 makes of the tree (untimed)
        parent, base = os.path.split(data)
        r = subprocess.run("tar cf - -C %s %s | zstd -3 -T2 | wc -c" % (q(parent), q(base)),
                           shell=True, capture_output=True, text=True)
        ds["tar_zstd3_bytes"] = int(r.stdout.strip()) if r.returncode == 0 else None

        results = {t.name: {"runs": []} for t in self.tools}
        for t in self.tools:
            if not t.binary:
                results[t.name]["status"] = "n/a"
                results[t.name]["reason"] = "binary not found"
                log("%s: not installed, shown as n/a" % t.name)
        floors = []
        for run in range(1, self.args.runs + 1):
            if not self.args.no_floors:
                self.warm(data)
                floors.append(self.floors_run(data, dsname, run))
            for t in self.tools:
                rt = results[t.name]
                if rt.get("status") in ("n/a", "fail"):
                    continue
                self.warm(data)
                log("%s run %d/%d on %s" % (t.name, run, self.args.runs, dsname))
                res = self.one_tool_run(t, data, dsname, run, src_stats)
                rt["runs"].append(res)
                if "error" in res:
                    rt["status"] = "fail"  # do not repeat a failing tool
        for t in self.tools:
            results[t.name].setdefault("status", "ok")
        return {"dataset": ds, "tools": results, "floors": floors,
                "summary": summarize(results, floors)}


# --------------------------------------------------------------------------
# summary and report


def summarize(results, floors):
    s = {"tools": {}, "floors": {}}
    for name, rt in results.items():
        d = {"status": rt["status"]}
        for ph in PHASES:
            ok = [r[ph] for r in rt["runs"] if ph in r and r[ph]["rc"] == 0]
            if ok:
                d[ph + "_s"] = statistics.median(x["seconds"] for x in ok)
                d[ph + "_spread"] = spread([x["seconds"] for x in ok])
                d[ph + "_rss_mib"] = max(x.get("peak_kib", x["rss_kib"]) for x in ok) / 1024
        sizes = [r["repo_bytes"] for r in rt["runs"] if r.get("repo_bytes") is not None]
        if sizes:
            d["repo_mib"] = statistics.median(sizes) / MiB
        ver = [r["verify"]["ok"] for r in rt["runs"] if "verify" in r]
        if ver:
            d["restore_verified"] = all(ver)
        errs = [r["error"] for r in rt["runs"] if "error" in r]
        if errs:
            d["error"] = errs[0]
        s["tools"][name] = d
    for f in FLOORS:
        ok = [fr[f] for fr in floors if f in fr and fr[f]["rc"] == 0]
        if ok:
            s["floors"][f] = {"s": statistics.median(x["seconds"] for x in ok),
                              "spread": spread([x["seconds"] for x in ok]),
                              "rss_mib": max(x.get("peak_kib", x["rss_kib"]) for x in ok) / 1024}
    return s


def spread(values):
    """Half the min-max range relative to the median, in percent (None for one value)."""
    if len(values) < 2:
        return None
    m = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / 2 / m if m > 0 else None


def fmt_spread(v):
    return "" if v is None else " ±%.0f%%" % v


def fmt_s(v):
    if v is None:
        return "—"
    return "%.2f" % v if v < 10 else "%.1f" % v


def fmt_mib(v):
    if v is None:
        return "—"
    return "%.1f" % v if v < 10 else "%.0f" % v


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "n/a"
    return "%.2f×" % (a / b)


def md_cell(text):
    """Escape pipes for a GitHub-flavoured Markdown table cell."""
    return text.replace("|", "\\|")


def cell(d, key, fmt):
    if d["status"] == "n/a":
        return "n/a"
    if key not in d:
        return "fail"
    text = fmt(d[key])
    if key.endswith("_s"):
        text += fmt_spread(d.get(key[:-2] + "_spread"))
    return text


def report_dataset(res, tools):
    ds = res["dataset"]
    s = res["summary"]
    st = s["tools"]
    fl = s["floors"]
    lines = []
    lines.append("### Dataset `%s`" % ds["label"])
    lines.append("")
    zs = ds.get("tar_zstd3_bytes")
    lines.append("`%s`: %d regular files, %.0f MiB of file data (du -sb %.0f MiB)%s."
                 % (ds["path"], ds["files"], ds["file_bytes"] / MiB, (ds["du_bytes"] or 0) / MiB,
                    ", `tar | zstd -3` = %.0f MiB" % (zs / MiB) if zs else ""))
    lines.append("")
    head = ["phase"] + tools + ["floor", "lifeboat ÷ best peer", "lifeboat ÷ floor"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    lb = st.get("lifeboat")

    def best_peer(key):
        vals = [(st[p][key], p) for p in PEERS if p in st and key in st[p]]
        return min(vals) if vals else (None, None)

    for ph in PHASES:
        key = ph + "_s"
        fname = PHASE_FLOOR[ph]
        fv = fl.get(fname, {}).get("s")
        bv, bp = best_peer(key)
        lbv = lb.get(key) if lb else None
        row = ["%s, s" % PHASE_LABEL[ph]] + [cell(st[t], key, fmt_s) for t in tools]
        fsp = fmt_spread(fl.get(fname, {}).get("spread"))
        row.append("%s%s (%s)" % (fmt_s(fv), fsp, {"compress": "compress", "stat": "stat walk",
                                                  "write": "cp -a"}[fname])
                   if fv is not None else "—")
        row.append(fmt_ratio(lbv, bv) + (" (vs %s)" % bp if bp and lbv is not None else ""))
        row.append(fmt_ratio(lbv, fv))
        lines.append("| " + " | ".join(row) + " |")
    for ph in PHASES:
        key = ph + "_rss_mib"
        bv, bp = best_peer(key)
        lbv = lb.get(key) if lb else None
        row = ["peak RSS %s, MiB" % ph] + [cell(st[t], key, fmt_mib) for t in tools]
        row += ["—", fmt_ratio(lbv, bv) + (" (vs %s)" % bp if bp and lbv is not None else ""),
                "—"]
        lines.append("| " + " | ".join(row) + " |")
    bv, bp = best_peer("repo_mib")
    lbv = lb.get("repo_mib") if lb else None
    zmib = zs / MiB if zs else None
    row = ["repo size after initial, MiB"] + [cell(st[t], "repo_mib", fmt_mib) for t in tools]
    row += ["%s (tar\\|zstd -3)" % fmt_mib(zmib) if zmib else "—",
            fmt_ratio(lbv, bv) + (" (vs %s)" % bp if bp and lbv is not None else ""),
            fmt_ratio(lbv, zmib)]
    lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    notes = []
    for t in tools:
        d = st[t]
        if d["status"] == "n/a":
            notes.append("%s: n/a (%s)" % (t, res["tools"][t].get("reason", "")))
        elif "error" in d:
            notes.append("%s: failed at %s" % (t, d["error"]))
        if d.get("restore_verified") is False:
            notes.append("%s: restored tree did NOT match the source (file count/bytes)" % t)
    checked = [t for t in tools if st[t].get("restore_verified")]
    if checked:
        notes.append("restore check (regular-file count and bytes equal the source's) "
                     "passed for %s" % ", ".join(checked))
    if notes:
        lines.append("Notes: " + "; ".join(notes) + ".")
        lines.append("")
    if fl:
        lines.append("Machine floors on the same tree (median s, peak RSS MiB):")
        lines.append("")
        lines.append("| floor | s | peak RSS, MiB |")
        lines.append("|---|---:|---:|")
        for f in FLOORS:
            if f in fl:
                lines.append("| %s | %s | %s |" % (md_cell(FLOOR_LABEL[f]),
                                                   fmt_s(fl[f]["s"]) + fmt_spread(fl[f].get("spread")),
                                                   fmt_mib(fl[f]["rss_mib"])))
            else:
                lines.append("| %s | fail | — |" % md_cell(FLOOR_LABEL[f]))
        lines.append("")
    return "\n".join(lines)


def report_header(h):
    lines = ["## lifeboat benchmark, %s" % h["date"], ""]
    lines.append("- machine: %d cores (%s), %.1f GiB RAM, Linux %s"
                 % (h["nproc"], h["cpu"], h["mem_gib"], h["versions"].get("kernel", "?")))
    lines.append("- lifeboat commit: %s" % h["commit"])
    lines.append("- runs per measurement: %d (median wall time; peak RSS = max over runs; "
                 "fresh repository each run)" % h["runs"])
    for k, v in h["versions"].items():
        if k == "kernel":
            continue
        lines.append("- %s: %s" % (k, v.splitlines()[0] if v else "?"))
    lines.append("")
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="lifeboat benchmark driver")
    ap.add_argument("--dataset", action="append", metavar="NAME=DIR")
    ap.add_argument("--report", nargs="+", metavar="JSON",
                    help="only re-print the report of earlier results files")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default=",".join(ALL_TOOLS))
    ap.add_argument("--scratch", default=os.environ.get("BENCH_SCRATCH", "/tmp/lifeboat-bench"))
    ap.add_argument("--results-dir", default=os.path.join(here, "results"))
    ap.add_argument("--repo-root", default=os.path.dirname(here))
    ap.add_argument("--lifeboat-bin", default=os.environ.get(
        "LIFEBOAT_BIN", os.path.join(os.path.dirname(here), "target", "release", "lifeboat")))
    ap.add_argument("--no-floors", action="store_true")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", 3600)),
                    help="seconds after which one command is killed (default 3600)")
    args = ap.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in args.tools:
        if t not in TOOL_CLASSES:
            ap.error("unknown tool %r (known: %s)" % (t, ", ".join(ALL_TOOLS)))
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.report:
        for i, path in enumerate(args.report):
            with open(path) as f:
                res = json.load(f)
            res["summary"] = summarize(res["tools"], res["floors"])
            if i == 0:
                print(report_header(res["header"]))
            print(report_dataset(res, list(res["tools"])))
            print("_(dataset wall time %.0f s; raw results: `%s`)_\n"
                  % (res.get("elapsed_s", 0), os.path.relpath(path, args.repo_root)))
        return 0
    if not args.dataset:
        ap.error("--dataset NAME=DIR is required (or --report JSON...)")
    datasets = []
    for d in args.dataset:
        name, sep, path = d.partition("=")
        if not sep or not os.path.isdir(path):
            ap.error("--dataset wants NAME=DIR with an existing DIR, got %r" % d)
        datasets.append((name, os.path.abspath(path)))

    def on_term(signum, frame):
        raise SystemExit(128 + signum)  # run the clean-up below, ending the running child

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    bench = Bench(args)
    bench.prepare_scratch()
    t_all = time.monotonic()
    try:
        os.makedirs(args.results_dir, exist_ok=True)
        h = bench.header()
        print(report_header(h), flush=True)
        for name, path in datasets:
            t0 = time.monotonic()
            res = bench.run_dataset(name, path)
            res["header"] = h
            res["elapsed_s"] = round(time.monotonic() - t0, 1)
            out = os.path.join(args.results_dir, "%s-%s.json"
                               % (name, bench.stamp.strftime("%Y-%m-%d-%H%M%S")))
            with open(out, "w") as f:
                json.dump(res, f, indent=1)
            print(report_dataset(res, args.tools), flush=True)
            print("_(dataset wall time %.0f s; raw results: `%s`)_\n"
                  % (res["elapsed_s"], os.path.relpath(out, args.repo_root)), flush=True)
            log("wrote %s" % out)
    finally:
        # remove everything this run put in the scratch dir
        for entry in os.listdir(bench.scratch):
            if entry != SCRATCH_MARK:
                bench.wipe(os.path.join(bench.scratch, entry))
        if os.listdir(bench.scratch) == [SCRATCH_MARK]:
            os.remove(os.path.join(bench.scratch, SCRATCH_MARK))
            os.rmdir(bench.scratch)
    log("all done in %.0f s" % (time.monotonic() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
