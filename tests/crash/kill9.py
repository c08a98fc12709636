#!/usr/bin/env python3
"""kill -9 lifeboat at random moments of backup, prune, copy, repair and WAL push.

For each operation this script builds a small repository (a source tree of a few hundred
small files and a few multi-MiB random files), measures one normal run of the operation, then
N times: prepares the state the operation needs, starts it, kills it with SIGKILL (its whole
process group, and for WAL push the background pusher too) at a random moment, and verifies:

- `check --read-data` exits 0 (notes, such as the unindexed packs of an interrupted run, are
  fine; errors are not);
- every snapshot in the repository restores, and its files equal what was backed up (a
  manifest of SHA-256 per path per snapshot is kept);
- the operation's next normal run succeeds;
- for WAL push: every segment whose `pg wal-push` returned 0 before the kill is in the spool
  or in the repository (`pg wal-fetch` gives the same bytes); with `wal-push --drain SEGMENT`
  as the archive command it must be in the repository.

Half of the kills come after a delay (stratified uniform over the measured duration of a
normal run), half at the moment the k-th new object of one kind appears in (or disappears
from) the repository's data/, index/, snapshots/, locks/, condemned/ or forgotten/
directories, or in the WAL spool (inotify; the kind and k are drawn from what the measured
run did).

It prints a Markdown table and exits non-zero if any verification failed, printing each
failure with the seed, iteration and kill point, and how to replay it (same seed and
iteration count, so the same data and schedule):

    tests/crash/kill9.py --ops prune --seed S --iterations N --only-iteration I --kill-point trigger=pack-:2

Linux only (inotify, /proc, process groups); Python 3.9+, standard library only. See
docs/reliability.md, "Crash consistency (kill -9)".
"""

import argparse
import collections
import ctypes
import hashlib
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PASSWORD = "kill9 crash consistency"
MIB = 1 << 20
ALL_OPS = ["backup", "prune", "copy", "repair", "wal-push"]

# The source tree: small files in a few directories, and a few large random files.
BIG_FILES = 4
BIG_SIZE = 6 * MIB
SMALL_DIRS = 8
SMALL_PER_DIR = 40
WORDS = (
    "lifeboat backup restore snapshot pack index blob tree chunk prune copy repair "
    "segment archive spool lock crash kill signal durable fsync rename write order "
    "the of and a to in is that for it with as on be at by this from or an"
).split()

# WAL segments: 16 MiB, a random prefix and zeros after it (a segment switched early).
WAL_SEGMENT = 16 * MIB
WAL_PER_RUN = 6


# ---------------------------------------------------------------------------------------------
# Processes


_libc = ctypes.CDLL(None, use_errno=True)


def become_subreaper():
    """Orphans of our children (the background WAL pusher, once the wal-push that started it
    is gone) become our children, so that we can reap them: lifeboat takes a lock whose
    process is a zombie for a live one."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort
        pass


class Result:
    def __init__(self, argv, rc, out, err, seconds):
        self.argv, self.rc, self.out, self.err, self.seconds = argv, rc, out, err, seconds

    def json(self):
        """The last JSON line of stdout."""
        for line in reversed(self.out.splitlines()):
            line = line.strip()
            if line.startswith("{") or line.startswith("["):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return None

    def describe(self, lines=12):
        def tail(text):
            t = text.strip().splitlines()
            if len(t) > lines:
                t = ["..."] + t[-lines:]
            return "\n".join("      " + x for x in t)

        return "    $ %s\n    exit %s\n    stdout:\n%s\n    stderr:\n%s" % (
            " ".join(shlex_quote(a) for a in self.argv),
            self.rc,
            tail(self.out),
            tail(self.err),
        )


def shlex_quote(s):
    import shlex

    return shlex.quote(str(s))


class Lifeboat:
    """Runs the binary with an isolated HOME and the test password."""

    def __init__(self, binary, scratch):
        self.bin = str(binary)
        self.real_bin = os.path.realpath(self.bin)
        home = scratch / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "LANG": "C.UTF-8",
            "LIFEBOAT_PASSWORD": PASSWORD,
            "LIFEBOAT_TO_PASSWORD": PASSWORD,
            # The background WAL pusher leaves soon after the spool is empty.
            "LIFEBOAT_PG_PUSHER_IDLE": "0.3",
        }

    def argv(self, repo, args):
        return [self.bin, "--repo", str(repo)] + [str(a) for a in args]

    def run(self, repo, *args, timeout=600, env=None):
        argv = self.argv(repo, args)
        started = time.monotonic()
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(self.env, **(env or {})),
            start_new_session=True,
        )
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p.pid)
            out, err = p.communicate()
            err = (err or b"") + b"\n[kill9.py: timed out after %d s, killed]" % timeout
        return Result(
            argv,
            p.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - started,
        )

    def spawn(self, repo, args, log):
        return subprocess.Popen(
            self.argv(repo, args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def our_processes(binary, arg):
    """Live processes that are ours: descendants of this script running `binary` (also in
    the moment of their exec, when their command line reads empty), and any process with
    `arg` among its arguments (a pusher whose parent is gone, should we not be a subreaper)."""
    me = os.getpid()
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            children[int(fields[1])].append(int(entry))
    found = set()
    todo = list(children.get(me, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            if os.path.realpath("/proc/%d/exe" % pid) == binary:
                found.add(pid)
        except OSError:
            pass
    found.update(processes_with_arg(arg))
    return sorted(found)


def processes_with_arg(arg):
    """Pids of live (not zombie) processes with `arg` among their arguments."""
    want = arg.encode()
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if want in args:
            pids.append(int(entry))
    return pids


def holders_of(path):
    """The processes that have `path` open, with their command lines (for diagnostics)."""
    target = os.path.realpath(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % entry)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%s/fd/%s" % (entry, fd)) == target:
                    with open("/proc/%s/cmdline" % entry, "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    with open("/proc/%s/stat" % entry) as f:
                        stat = f.read().rsplit(")", 1)[1].split()
                    found.append("pid %s (state %s, parent %s, group %s): %s" % (
                        entry, stat[0], stat[1], stat[2], cmd or "(no command line)"))
                    break
            except OSError:
                continue
    return found or "none"


def reap(pid, timeout=10.0):
    """Waits until `pid` is gone: reaped by us (we are a subreaper, so an orphaned pusher is
    our child), or by whoever its parent is. Only for pids that are not subprocess.Popen
    children."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return True
        except ChildProcessError:
            if not os.path.exists("/proc/%d" % pid):
                return True
        time.sleep(0.005)
    return False


# ---------------------------------------------------------------------------------------------
# Watching the repository: inotify through ctypes


IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM

REPO_NAMESPACES = {
    "index": "index",
    "snapshots": "snapshot",
    "locks": "lock",
    "condemned": "condemned",
    "forgotten": "forgotten",
}
SPOOL_DIRS = {"ready": "spool-ready", "done": "spool-done", "tmp": "spool-tmp"}


class Watcher:
    """Counts objects appearing (`KIND+`) and disappearing (`KIND-`) in repositories and WAL
    spools. Hidden files (a writer's temporaries) are not objects."""

    def __init__(self, repos=(), spools=()):
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.roles = {}  # wd -> (role, prefix or kind, path)
        self.present = set()
        self.counts = collections.Counter()
        self.events = []  # (seconds since start, event)
        self.started = time.monotonic()
        self.repos = [(Path(r), p) for r, p in repos]
        self.spools = [Path(s) for s in spools]
        for repo, prefix in self.repos:
            self._add(repo, "repo-root", prefix)
            for ns, kind in REPO_NAMESPACES.items():
                self._add_ns(repo / ns, prefix + kind, initial=True)
            self._add(repo / "data", "data-root", prefix)
            for sub in sorted(_listdir(repo / "data")):
                self._add_ns(repo / "data" / sub, prefix + "pack", initial=True)
        for spool in self.spools:
            self._add(spool, "spool-root", "")
            for sub, kind in SPOOL_DIRS.items():
                self._add_ns(spool / sub, kind, initial=True)

    def close(self):
        os.close(self.fd)

    def _add(self, path, role, what):
        if not path.is_dir():
            return None
        wd = _libc.inotify_add_watch(self.fd, str(path).encode(), WATCH_MASK)
        if wd < 0:
            return None
        self.roles[wd] = (role, what, path)
        return wd

    def _add_ns(self, path, kind, initial):
        if self._add(path, "ns", kind) is None:
            return
        for name in _listdir(path):
            if name.startswith("."):
                continue
            key = (str(path), name)
            if initial:
                self.present.add(key)
            elif key not in self.present:
                self._record(kind + "+", key)

    def _record(self, event, key):
        if event.endswith("+"):
            self.present.add(key)
        else:
            self.present.discard(key)
        self.counts[event] += 1
        self.events.append((time.monotonic() - self.started, event))

    def wait(self, timeout):
        """Waits up to `timeout` seconds for events and records them."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if ready:
            self.drain()

    def drain(self):
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            off = 0
            while off < len(buf):
                wd, mask, _cookie, length = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16 : off + 16 + length].split(b"\0", 1)[0].decode()
                off += 16 + length
                if mask & IN_Q_OVERFLOW:
                    self._rescan()
                    continue
                role = self.roles.get(wd)
                if role is None:
                    continue
                self._event(role, mask, name)

    def _event(self, role, mask, name):
        kind_role, what, path = role
        created = mask & (IN_CREATE | IN_MOVED_TO)
        if mask & IN_ISDIR:
            if not created:
                return
            if kind_role == "repo-root" and name in REPO_NAMESPACES:
                self._add_ns(path / name, what + REPO_NAMESPACES[name], initial=False)
            elif kind_role == "repo-root" and name == "data":
                self._add(path / name, "data-root", what)
                for sub in _listdir(path / name):
                    self._add_ns(path / name / sub, what + "pack", initial=False)
            elif kind_role == "data-root":
                self._add_ns(path / name, what + "pack", initial=False)
            elif kind_role == "spool-root" and name in SPOOL_DIRS:
                self._add_ns(path / name, SPOOL_DIRS[name], initial=False)
            return
        if kind_role != "ns" or name.startswith("."):
            return
        key = (str(path), name)
        if created:
            if key not in self.present:
                self._record(what + "+", key)
        elif key in self.present:
            self._record(what + "-", key)

    def _rescan(self):
        for wd, (role, what, path) in list(self.roles.items()):
            if role != "ns":
                continue
            now = {n for n in _listdir(path) if not n.startswith(".")}
            before = {n for (p, n) in self.present if p == str(path)}
            for n in sorted(now - before):
                self._record(what + "+", (str(path), n))
            for n in sorted(before - now):
                self._record(what + "-", (str(path), n))

    def last_event(self):
        return self.events[-1][1] if self.events else None


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# Source trees and manifests


def small_path(src, n):
    return src / ("dir-%02d" % (n // SMALL_PER_DIR)) / ("file-%03d.dat" % (n % SMALL_PER_DIR))


def small_content(rng, n):
    length = rng.randint(200, 12 * 1024)
    if n % 2:
        return rng.randbytes(length)
    text = " ".join(rng.choices(WORDS, k=length // 5 + 1)).encode()
    return text[:length]


class Source:
    """A source tree, and the SHA-256 of each of its files, kept as they are written."""

    def __init__(self, root):
        self.root = Path(root)
        self.files = {}

    def write(self, rel, data):
        write(self.root / rel, data)
        self.files[rel] = hashlib.sha256(data).hexdigest()

    def remove(self, rel):
        if rel in self.files:
            (self.root / rel).unlink()
            del self.files[rel]

    def manifest(self):
        return dict(self.files)

    def build(self, rng):
        """About 26 MiB: four random files of 6 MiB and 320 small files of 0.2-12 KiB."""
        for i in range(BIG_FILES):
            self.write("big/%d.bin" % i, rng.randbytes(BIG_SIZE))
        for n in range(SMALL_DIRS * SMALL_PER_DIR):
            self.write(self.small(n), small_content(rng, n))

    def small(self, n):
        return str(small_path(Path("."), n))

    def change(self, rng, big_changes, tag):
        """Rewrites `big_changes` large files and 20 small files, adds one, and sometimes
        removes one."""
        for i in rng.sample(range(BIG_FILES), big_changes):
            self.write("big/%d.bin" % i, rng.randbytes(BIG_SIZE))
        total = SMALL_DIRS * SMALL_PER_DIR
        for n in rng.sample(range(total), 20):
            self.write(self.small(n), small_content(rng, n))
        self.write("new/run-%s.txt" % tag, small_content(rng, 0))
        if rng.random() < 0.3:
            self.remove(self.small(rng.randrange(total)))


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else _sha256_read(f)


def _sha256_read(f):
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def manifest(root):
    """Relative path -> SHA-256 of every regular file under `root` ({} if it is missing)."""
    out = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            out[str(p.relative_to(root))] = sha256_file(p)
    return out


def describe_diff(got, want, limit=6):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = []
    for label, items in (("missing", missing), ("unexpected", extra), ("different", differ)):
        if items:
            more = " ..." if len(items) > limit else ""
            parts.append("%d %s (%s%s)" % (len(items), label, ", ".join(items[:limit]), more))
    return "; ".join(parts) or "identical"


# ---------------------------------------------------------------------------------------------
# Kill points


class KillPoint:
    def __init__(self, kind, delay=None, event=None, nth=None, of=None, duration=None):
        self.kind, self.delay, self.event, self.nth, self.of = kind, delay, event, nth, of
        self.duration = duration

    @staticmethod
    def parse(spec):
        """`delay=SECONDS`, `trigger=EVENT:N` or `none`."""
        if spec == "none":
            return KillPoint("none")
        key, _, value = spec.partition("=")
        if key == "delay":
            return KillPoint("delay", delay=float(value))
        if key == "trigger":
            event, _, nth = value.rpartition(":")
            return KillPoint("trigger", event=event, nth=int(nth))
        raise ValueError("kill point %r: use delay=SECONDS, trigger=EVENT:N or none" % spec)

    def spec(self):
        if self.kind == "delay":
            return "delay=%.4f" % self.delay
        if self.kind == "trigger":
            return "trigger=%s:%d" % (self.event, self.nth)
        return "none"

    def __str__(self):
        if self.kind == "delay":
            if self.duration:
                return "delay %.3f s (%.0f%% of the measured %.3f s)" % (
                    self.delay,
                    100 * self.delay / self.duration,
                    self.duration,
                )
            return "delay %.3f s" % self.delay
        if self.kind == "trigger":
            of = " of %d in the measured run" % self.of if self.of else ""
            return "when %s #%d happens%s" % (self.event, self.nth, of)
        return "no kill"


def schedule(n, measured, rng):
    """Kill points for iterations 0..n-1: even iterations after a delay (stratified, so
    uniform over the measured duration and spread evenly), odd ones on the k-th event of a
    kind the measured run showed (kinds taken in turn, k uniform).  `measured(i)` gives the
    (duration, event counts) of the measured run for iteration i's mode."""
    delays = [i for i in range(n) if i % 2 == 0]
    strata = list(range(len(delays)))
    rng.shuffle(strata)
    points = {}
    for slot, i in zip(strata, delays):
        duration, _ = measured(i)
        frac = (slot + rng.random()) / len(delays)
        points[i] = KillPoint("delay", delay=frac * duration, duration=duration)
    turn = collections.Counter()
    for i in range(n):
        if i in points:
            continue
        duration, counts = measured(i)
        kinds = sorted(k for k, c in counts.items() if c > 0)
        if not kinds:
            points[i] = KillPoint("delay", delay=rng.random() * duration, duration=duration)
            continue
        key = tuple(kinds)
        order = kinds[:]
        random.Random("%s" % (key,)).shuffle(order)
        kind = order[turn[key] % len(order)]
        turn[key] += 1
        points[i] = KillPoint("trigger", event=kind, nth=rng.randint(1, counts[kind]), of=counts[kind])
    return [points[i] for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Running an operation: a sequence of commands in a thread, killable at any moment


SPAWN_FAILED = -1000


class Sequence:
    """Runs commands one after the other (each in its own process group) until one fails or
    kill() is called."""

    def __init__(self, lb, steps, log_path, on_success=None):
        self.lb, self.steps, self.on_success = lb, steps, on_success
        self.log_path = log_path
        self.lock = threading.Lock()
        self.stopped = False
        self.current = None
        self.current_label = None
        self.results = []  # (label, returncode)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        with open(self.log_path, "ab") as log:
            for step in self.steps:
                label, repo, args = step[0], step[1], step[2]
                with self.lock:
                    if self.stopped:
                        return
                    log.write(("\n### %s\n" % " ".join(self.lb.argv(repo, args))).encode())
                    log.flush()
                    try:
                        p = self.lb.spawn(repo, args, log)
                    except OSError as e:
                        self.results.append((label + " (could not start: %s)" % e, SPAWN_FAILED))
                        return
                    self.current, self.current_label = p, label
                rc = p.wait()
                with self.lock:
                    self.current = None
                    self.results.append((label, rc))
                if rc == 0 and self.on_success:
                    self.on_success(step)
                if rc != 0:
                    return

    def finished(self):
        return not self.thread.is_alive()

    def kill(self):
        """Kills the running command's process group; returns its label if it was killed
        (not if it had ended meanwhile, or none ran)."""
        with self.lock:
            self.stopped = True
            p, label = self.current, self.current_label
            if p is not None and p.returncode is None:
                kill_group(p.pid)
        self.thread.join(60)
        if p is not None and p.returncode == -signal.SIGKILL:
            return label
        return None

    def killed(self):
        return any(rc == -signal.SIGKILL for _, rc in self.results)

    def failed_on_its_own(self):
        return [(label, rc) for label, rc in self.results if rc != 0 and rc != -signal.SIGKILL]


class Running:
    """A started operation."""

    def __init__(self, seq):
        self.seq = seq
        self.killed_what = []

    def finished(self):
        return self.seq.finished()

    def kill(self):
        label = self.seq.kill()
        if label:
            self.killed_what.append(label)

    def killed(self):
        return self.seq.killed() or bool(self.killed_what)

    def failed_on_its_own(self):
        return self.seq.failed_on_its_own()


def run_and_kill(running, watcher, point, measured_duration):
    """Starts nothing; waits until the kill point (or the end of the run) and kills.
    Returns (outcome, seconds): outcome is 'killed', 'finished' or 'hung'."""
    started = time.monotonic()
    safety = started + max(120.0, 20 * measured_duration)
    while True:
        # The trigger first: a run often ends a few milliseconds after its last object.
        if point.kind == "trigger" and watcher.counts[point.event] >= point.nth:
            running.kill()
            return "killed", time.monotonic() - started
        now = time.monotonic()
        if running.finished():
            watcher.drain()
            return "finished", now - started
        if point.kind == "delay" and now - started >= point.delay:
            running.kill()
            return "killed", now - started
        if now > safety:
            running.kill()
            return "hung", now - started
        timeout = 0.02
        if point.kind == "delay":
            timeout = min(timeout, point.delay - (now - started))
        watcher.wait(timeout)


# ---------------------------------------------------------------------------------------------
# The operations


class Failure:
    def __init__(self, op, iteration, seed, point, spec, stage, message):
        self.op, self.iteration, self.seed, self.point = op, iteration, seed, point
        self.spec, self.stage, self.message = spec, stage, message


class Stats:
    def __init__(self, op):
        self.op = op
        self.iterations = 0
        self.killed = 0
        self.finished_first = 0
        self.delay_kills = 0
        self.trigger_kills = 0
        self.check_ok = 0
        self.restore_ok = 0
        self.next_ok = 0
        self.snapshots_restored = 0
        self.failures = 0
        self.seconds = 0.0
        self.measured = {}
        self.last_events = collections.Counter()
        self.killed_step = collections.Counter()
        self.notes = 0
        self.extra = collections.Counter()


class OpTest:
    """One operation's test: subclasses say how to set up, what to run, what to expect."""

    name = None
    modes = ["normal"]
    big_changes = 1
    check_after_next_run = False  # repair: the next run is what makes check pass

    def __init__(self, ctx):
        self.ctx = ctx
        self.lb = ctx.lb
        self.dir = ctx.scratch / self.name
        self.dir.mkdir(parents=True)
        self.src = self.dir / "src"
        self.source = Source(self.src)
        self.repo = self.dir / "repo"
        self.expected = {}  # snapshot id -> manifest
        self.iteration = None
        self.point = None

    # -- helpers
    def rng(self, what):
        return random.Random("%s:%s:%s" % (self.ctx.seed, self.name, what))

    def must(self, result, what):
        if result.rc != 0:
            raise SetupError("%s failed\n%s" % (what, result.describe()))
        return result

    def init_repo(self, repo):
        self.must(
            self.lb.run(repo, "init", "--kdf-iterations", "1", "--kdf-memory-kib", "64"),
            "init " + str(repo),
        )

    def backup(self, repo=None):
        repo = repo or self.repo
        r = self.must(self.lb.run(repo, "backup", "--json", self.src), "backup")
        sid = r.json()["snapshot_id"]
        return sid, r

    def snapshots(self, repo=None):
        r = self.lb.run(repo or self.repo, "snapshots", "--json")
        if r.rc != 0:
            raise VerifyError("snapshots", "snapshots --json failed\n" + r.describe())
        return r.json() or []

    def forget(self, ids, repo=None):
        if ids:
            self.must(self.lb.run(repo or self.repo, "forget", *ids), "forget")

    def prune(self, repo=None):
        self.must(self.lb.run(repo or self.repo, "prune", "--json"), "prune")

    def log(self, what):
        return self.dir / ("log-%s.txt" % what)

    # -- verification
    def check(self, repo=None):
        r = self.lb.run(repo or self.repo, "check", "--read-data", "--json")
        summary = r.json() or {}
        findings = summary.get("findings", []) if isinstance(summary, dict) else []
        errors = [f for f in findings if f.get("error")]
        notes = [f for f in findings if not f.get("error")]
        if r.rc != 0 or errors:
            shown = "\n".join(
                "      %s: %s" % (f.get("object"), f.get("message")) for f in errors[:8]
            )
            raise VerifyError(
                "check",
                "check --read-data exit %s, %d error(s):\n%s\n%s"
                % (r.rc, len(errors), shown, r.describe(6)),
            )
        return notes

    def restored_root(self, snap, target):
        if snap.get("source") == "files" and snap.get("paths"):
            return target / snap["paths"][0].lstrip("/")
        return target

    def restore_all(self, repo=None, judge=None):
        """Restores every snapshot and judges its files; returns how many."""
        repo = repo or self.repo
        judge = judge or self.judge_exact
        snaps = self.snapshots(repo)
        problems = []
        # One at a time: two restores at once can fail on their own (the lock-listing race
        # described in docs/reliability.md), and a failure here must be the kill's doing.
        for batch in [[snap] for snap in snaps]:
            runs = []
            for k, snap in enumerate(batch):
                target = self.ctx.restore_dir / ("%s-%d" % (self.name, k))
                shutil.rmtree(target, ignore_errors=True)
                argv = self.lb.argv(repo, ["restore", snap["id"], "--target", target])
                p = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self.lb.env,
                    start_new_session=True,
                )
                runs.append((snap, target, argv, p))
            for snap, target, argv, p in runs:
                try:
                    out, err = p.communicate(timeout=600)
                except subprocess.TimeoutExpired:
                    kill_group(p.pid)
                    out, err = p.communicate()
                if p.returncode != 0:
                    res = Result(argv, p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), 0)
                    problems.append("snapshot %s does not restore\n%s" % (snap["id"][:12], res.describe()))
                else:
                    got = manifest(self.restored_root(snap, target))
                    verdict = judge(snap, got)
                    if verdict:
                        problems.append("snapshot %s: %s" % (snap["id"][:12], verdict))
                shutil.rmtree(target, ignore_errors=True)
        if problems:
            raise VerifyError("restore", "\n".join(problems))
        return len(snaps)

    def judge_exact(self, snap, got):
        want = self.expected.get(snap["id"])
        if want is None:
            return "a snapshot this test did not expect (source %s, time %s)" % (
                snap.get("source"),
                snap.get("time"),
            )
        if got != want:
            return "restored content differs from what was backed up: " + describe_diff(got, want)
        return None

    def forget_all_but_newest(self, keep, repo=None, always_keep=()):
        snaps = sorted(self.snapshots(repo), key=lambda s: s["time"])
        old = [s["id"] for s in snaps[:-keep] if s["id"] not in always_keep] if keep else []
        self.forget(old, repo)
        for sid in old:
            self.expected.pop(sid, None)
        return old

    # -- interface
    def setup(self):
        raise NotImplementedError

    def mode_for(self, i):
        return self.modes[0]

    def prepare(self, i, rng, mode):
        """Makes the state the run needs; returns the steps to run: (label, repo, args)."""
        raise NotImplementedError

    def watch(self):
        return Watcher(repos=[(self.repo, "")])

    def start(self, steps, mode):
        seq = Sequence(self.lb, steps, self.log("run"))
        seq.start()
        return Running(seq)

    def after_run(self, running, outcome):
        """Bookkeeping right after the run ended or was killed (and reaped)."""

    def verify_after_kill(self, running, stats):
        """Operation-specific checks before check/restore (WAL: acknowledged segments)."""

    def next_run(self, stats):
        raise NotImplementedError

    def maintain(self, i):
        """Keeps the repository small between iterations (not part of what is killed)."""

    def written(self):
        """The repositories the operation writes."""
        return [self.repo]

    def final(self, stats):
        """Checks once more at the end; then a prune with nothing running must leave no
        leftovers of the killed runs: no condemned record waits, and check has no note (an
        unindexed pack, a pack waiting for deletion)."""
        self.check()
        self.restore_all()
        for repo in self.written():
            temporaries = sum(
                1 for _d, _s, files in os.walk(repo) for f in files if f.startswith(".")
            )
            stats.extra["temporary files killed writers left (prune removes them after a day)"] += temporaries
            stats.extra["stale locks left (`unlock` removes them)"] += len(
                [n for n in _listdir(repo / "locks") if not n.startswith(".")])
            self.must(self.lb.run(repo, "prune"), "final prune")
            condemned = [n for n in _listdir(repo / "condemned") if not n.startswith(".")]
            notes = OpTest.check(self, repo)
            if condemned or notes:
                raise VerifyError(
                    "leftovers",
                    "after a final prune with nothing running, %s still holds %d condemned "
                    "object(s) and check notes %d thing(s):\n%s"
                    % (repo, len(condemned), len(notes),
                       "\n".join("      %s: %s" % (n.get("object"), n.get("message")) for n in notes[:8])),
                )


class SetupError(Exception):
    pass


class VerifyError(Exception):
    def __init__(self, stage, message):
        super().__init__(message)
        self.stage = stage


class BackupTest(OpTest):
    name = "backup"
    big_changes = 3  # 18 MiB of new data: one pack fills up mid-run, one at the end

    def setup(self):
        self.source.build(self.rng("setup"))
        self.init_repo(self.repo)
        sid, _ = self.backup()
        self.first = sid
        self.expected[sid] = self.source.manifest()

    def prepare(self, i, rng, mode):
        self.source.change(rng, self.big_changes, i)
        self.state = self.source.manifest()
        self.before = {s["id"] for s in self.snapshots()}
        return [("backup", self.repo, ["backup", "--quiet", self.src])]

    def after_run(self, running, outcome):
        new = [s["id"] for s in self.snapshots() if s["id"] not in self.before]
        if len(new) > 1:
            raise VerifyError("run", "one backup wrote %d snapshots" % len(new))
        if outcome == "finished" and not running.failed_on_its_own() and len(new) != 1:
            raise VerifyError("run", "a backup that finished wrote no snapshot")
        for sid in new:
            self.expected[sid] = self.state

    def next_run(self, stats):
        r = self.lb.run(self.repo, "backup", "--json", self.src)
        if r.rc != 0:
            raise VerifyError("next run", "the next backup failed\n" + r.describe())
        summary = r.json() or {}
        self.expected[summary["snapshot_id"]] = self.state
        stats.extra["packs resumed by the next backup"] += summary.get("resumed_packs", 0)

    def maintain(self, i):
        self.forget_all_but_newest(2, always_keep={self.first})
        if i % 5 == 4:
            self.prune()


class PruneTest(OpTest):
    name = "prune"
    big_changes = 2

    def setup(self):
        self.source.build(self.rng("setup"))
        self.init_repo(self.repo)
        for k in range(3):
            if k:
                self.source.change(self.rng("setup-%d" % k), self.big_changes, "s%d" % k)
            sid, _ = self.backup()
            self.expected[sid] = self.source.manifest()

    def prepare(self, i, rng, mode):
        # A new snapshot, then forget the oldest ones: prune has packs to delete (data only
        # the forgotten snapshots used) and packs to repack (partly used ones).
        self.source.change(rng, self.big_changes, i)
        sid, _ = self.backup()
        self.expected[sid] = self.source.manifest()
        count = len(self.snapshots())
        self.forget_all_but_newest(max(1, min(rng.choice([1, 2, 2]), count - 1)))
        return [("prune", self.repo, ["prune"])]

    def next_run(self, stats):
        r = self.lb.run(self.repo, "prune", "--json")
        if r.rc != 0:
            raise VerifyError("next run", "the next prune failed\n" + r.describe())
        summary = r.json() or {}
        stats.extra["packs the next prune deleted"] += summary.get("packs_deleted", 0) or 0


class CopyTest(OpTest):
    name = "copy"
    big_changes = 3

    def setup(self):
        self.dst = self.dir / "dst"
        self.by_time = {}  # snapshot time -> manifest (copies keep the original's time)
        self.source.build(self.rng("setup"))
        self.init_repo(self.repo)
        self.init_repo(self.dst)
        for k in range(2):
            if k:
                self.source.change(self.rng("setup-%d" % k), self.big_changes, "s%d" % k)
            self.backup_and_record()
        self.must(self.lb.run(self.repo, "copy", "--to", self.dst), "copy")

    def backup_and_record(self):
        sid, _ = self.backup()
        snap = next(s for s in self.snapshots() if s["id"] == sid)
        self.by_time[snap["time"]] = self.source.manifest()

    def watch(self):
        return Watcher(repos=[(self.dst, ""), (self.repo, "src-")])

    def prepare(self, i, rng, mode):
        self.source.change(rng, self.big_changes, i)
        self.backup_and_record()
        return [("copy", self.repo, ["copy", "--to", self.dst])]

    def judge_copy(self, snap, got):
        want = self.by_time.get(snap["time"])
        if want is None:
            return "a copy of no snapshot this test made (time %s)" % snap["time"]
        if got != want:
            return "restored content differs from what was backed up: " + describe_diff(got, want)
        return None

    def check(self, repo=None):
        return OpTest.check(self, repo or self.dst)

    def restore_all(self, repo=None, judge=None):
        return OpTest.restore_all(self, repo or self.dst, judge or self.judge_copy)

    def next_run(self, stats):
        r = self.lb.run(self.repo, "copy", "--json", "--to", self.dst)
        if r.rc != 0:
            raise VerifyError("next run", "the next copy failed\n" + r.describe())
        summary = r.json() or {}
        stats.extra["packs resumed by the next copy"] += summary.get("resumed_packs", 0) or 0
        src_times = {s["time"] for s in self.snapshots(self.repo)}
        dst_times = collections.Counter(s["time"] for s in self.snapshots(self.dst))
        if not src_times <= set(dst_times):
            raise VerifyError("next run", "after the next copy the destination lacks %d snapshot(s)" % len(src_times - set(dst_times)))
        dup = [t for t, c in dst_times.items() if c > 1]
        if dup:
            raise VerifyError("next run", "the destination holds %d snapshot(s) twice: %s" % (len(dup), dup[:3]))

    def maintain(self, i):
        src = sorted(self.snapshots(self.repo), key=lambda s: s["time"])
        old_times = {s["time"] for s in src[:-2]}
        self.forget([s["id"] for s in src[:-2]], self.repo)
        self.forget([s["id"] for s in self.snapshots(self.dst) if s["time"] in old_times], self.dst)
        for t in old_times:
            self.by_time.pop(t, None)
        if i % 5 == 4:
            self.prune(self.repo)
            self.prune(self.dst)

    def written(self):
        return [self.dst]

    def final(self, stats):
        OpTest.check(self, self.repo)
        OpTest.final(self, stats)


class RepairTest(OpTest):
    name = "repair"
    check_after_next_run = True
    # What is damaged before each run: a pack the newest backup wrote (its files are lost
    # from the newest snapshot), an index file it wrote (nothing is lost: repair index finds
    # its packs), or any pack (several snapshots may lose files, or whole directories).
    modes = ["new pack", "new index file", "old pack"]

    def mode_for(self, i):
        return self.modes[i % len(self.modes)]

    def setup(self):
        self.source.build(self.rng("setup"))
        self.init_repo(self.repo)
        for k in range(2):
            if k:
                self.source.change(self.rng("setup-%d" % k), 1, "s%d" % k)
            sid, _ = self.backup()
            self.expected[sid] = self.source.manifest()
        self.damage_log = collections.Counter()
        self.healed_total = 0

    def objects(self, ns):
        root = self.repo / ns
        if ns == "data":
            return {p for p in root.glob("*/*") if not p.name.startswith(".")}
        return {p for p in root.glob("*") if not p.name.startswith(".")}

    def prepare(self, i, rng, mode):
        packs, indexes = self.objects("data"), self.objects("index")
        self.source.change(rng, 1, i)
        sid, _ = self.backup()
        self.expected[sid] = self.source.manifest()
        new_packs = sorted(self.objects("data") - packs)
        new_index = sorted(self.objects("index") - indexes)
        damage = mode
        if damage == "new pack" and new_packs:
            victim = rng.choice(new_packs)
        elif damage == "new index file" and new_index:
            victim = rng.choice(new_index)
        else:
            damage = "old pack"
            victim = rng.choice(sorted(self.objects("data")))
        victim.unlink()
        self.damage = "%s %s deleted" % (damage, victim.name[:12])
        if i >= 0:
            self.damage_log[damage] += 1
        self.lost = self.reference_repair()
        return [
            ("repair index", self.repo, ["repair", "index"]),
            ("repair snapshots", self.repo, ["repair", "snapshots", "--forget"]),
        ]

    def reference_repair(self):
        """What a repair that is not killed leaves out: `repair index` and `repair snapshots
        --dry-run` on a hard-linked copy (objects are write-once, so the copy cannot change
        the repository). Returns original snapshot id -> paths left out."""
        ref = self.dir / "reference"
        shutil.rmtree(ref, ignore_errors=True)
        subprocess.run(["cp", "-al", str(self.repo), str(ref)], check=True)
        try:
            self.must(self.lb.run(ref, "repair", "index"), "reference repair index")
            r = self.must(self.lb.run(ref, "repair", "snapshots", "--dry-run", "--json"), "reference repair snapshots --dry-run")
        finally:
            shutil.rmtree(ref, ignore_errors=True)
        lost = {}
        for entry in (r.json() or {}).get("repaired", []):
            lost[entry["original"]] = [x["path"] for x in entry.get("lost", [])]
        return lost

    def judge_repaired(self, snap, got):
        sid = snap["id"]
        if sid in self.expected:
            # An original the reference repair rewrote may still be here, complete: a killed
            # repair can write back a tree the damage took (a repaired snapshot's directory
            # that equals the original's), and the next run then finds nothing lost. It must
            # restore in full.
            if sid in self.lost:
                self.healed += 1
            return self.judge_exact(snap, got)
        original = snap.get("original")
        if original not in self.expected:
            return "a snapshot this test did not expect (original %s)" % original
        if original not in self.lost:
            self.repaired[sid] = got
            return "a repaired copy of %s, which the reference repair left intact (%s)" % (
                original[:12], describe_diff(got, self.expected[original]))
        want = self.predicted(snap, original)
        full = self.expected[original]
        wrong = [k for k in got if k not in full or got[k] != full[k]]
        missing = [k for k in want if k not in got]
        self.repaired[sid] = got
        if wrong or missing:
            return "repaired content is wrong: %d file(s) not in the original or different (%s), %d missing that the repair should keep (%s)" % (
                len(wrong),
                ", ".join(wrong[:5]),
                len(missing),
                ", ".join(missing[:5]),
            )
        return None

    def predicted(self, snap, original):
        """The original's files but those the reference repair left out."""
        root = snap["paths"][0] if snap.get("paths") else "/"
        lost = self.lost.get(original, [])

        def is_lost(rel):
            full = root.rstrip("/") + "/" + rel
            return any(full == p or full.startswith(p.rstrip("/") + "/") for p in lost)

        return {k: v for k, v in self.expected[original].items() if not is_lost(k)}

    def restore_all(self, repo=None, judge=None):
        self.repaired = {}
        self.healed = 0
        try:
            return OpTest.restore_all(self, repo, judge or self.judge_repaired)
        finally:
            # Repaired snapshots are expected from now on (what they restored, or if they
            # did not restore, what the reference repair kept); their originals are gone.
            # Done even after a failure, so that one failure does not cascade.
            snaps = self.snapshots()
            for snap in snaps:
                sid, original = snap["id"], snap.get("original")
                if sid not in self.expected and sid not in self.repaired and original in self.expected:
                    self.repaired[sid] = self.predicted(snap, original)
            present = {s["id"] for s in snaps}
            self.expected.update(self.repaired)
            for sid in list(self.expected):
                if sid not in present:
                    del self.expected[sid]
            self.lost = {}
            if self.healed and getattr(self, "counting", False):
                self.healed_total += self.healed

    def next_run(self, stats):
        for args in (["repair", "index"], ["repair", "snapshots", "--forget"]):
            r = self.lb.run(self.repo, *args)
            if r.rc != 0:
                raise VerifyError("next run", "the next `%s` failed (%s)\n%s" % (" ".join(args), self.damage, r.describe()))

    def maintain(self, i):
        self.forget_all_but_newest(2)
        if i % 4 == 3:
            self.prune()


class WalTest(OpTest):
    name = "wal-push"
    modes = ["background", "drain"]

    def setup(self):
        self.pgdata = self.dir / "pgdata"
        self.wal = self.dir / "pg_wal"
        self.spool = self.dir / "spool"
        self.wal.mkdir()
        rng = self.rng("setup")
        system_id = rng.getrandbits(63)
        write(self.pgdata / "global" / "pg_control", struct.pack("=Q", system_id) + bytes(8184))
        self.init_repo(self.repo)
        self.next_segment = 1
        self.hashes = {}  # segment name -> sha256
        self.snap_iteration = {}  # snapshot id -> iteration that made it
        self.acked_total = collections.Counter()
        # A first segment through the normal path creates the spool.
        names = self.make_segments(rng, 1)
        for name in names:
            self.must(self.lb.run(self.repo, *self.push_args(name, False)), "first wal-push")
        self.wait_for_pushers(60)
        self.drain_by_hand()
        self.record_snapshots(-1)

    def mode_for(self, i):
        return "drain" if i % 3 == 2 else "background"

    def segment_name(self, n):
        return "00000001%08X%08X" % (n >> 8, n & 0xFF)

    def make_segments(self, rng, count):
        names = []
        for _ in range(count):
            name = self.segment_name(self.next_segment)
            self.next_segment += 1
            data = rng.randbytes(rng.randint(MIB // 2, 2 * MIB))
            data += bytes(WAL_SEGMENT - len(data))
            write(self.wal / name, data)
            self.hashes[name] = hashlib.sha256(data).hexdigest()
            names.append(name)
        return names

    def push_args(self, name, drain):
        args = ["pg", "wal-push"]
        if drain:
            args.append("--drain")
        return args + [self.wal / name, "--spool", self.spool, "--pgdata", self.pgdata]

    def pushers(self):
        return our_processes(self.lb.real_bin, str(self.spool))

    def wait_for_pushers(self, timeout):
        """Waits until no pusher runs (three looks in a row find none)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            pids = self.pushers()
            if not pids:
                quiet += 1
                if quiet >= 3:
                    return True
                time.sleep(0.01)
                continue
            quiet = 0
            for pid in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.02)
        return False

    def ready(self):
        return sorted(n for n in _listdir(self.spool / "ready") if not n.startswith("."))

    def drain_by_hand(self):
        r = self.lb.run(self.repo, "pg", "wal-push", "--drain", "--spool", self.spool, "--pgdata", self.pgdata)
        if r.rc != 0:
            raise VerifyError("next run", "wal-push --drain failed\n" + r.describe())
        if self.ready():
            raise VerifyError(
                "next run",
                "after wal-push --drain (exit 0) the spool still holds %s; processes with the "
                "spool's pusher.lock open: %s\n%s"
                % (self.ready(), holders_of(self.spool / "pusher.lock"), r.describe()),
            )

    def watch(self):
        return Watcher(repos=[(self.repo, "")], spools=[self.spool])

    def prepare(self, i, rng, mode):
        self.mode = mode
        self.names = self.make_segments(rng, WAL_PER_RUN)
        self.acked = []
        drain = mode == "drain"
        return [("wal-push", self.repo, self.push_args(name, drain), name) for name in self.names]

    def start(self, steps, mode):
        seq = Sequence(self.lb, steps, self.log("run"), on_success=lambda step: self.acked.append(step[3]))
        seq.start()
        return WalRunning(seq, self)

    def fetch(self, name):
        dest = self.dir / "fetched"
        if dest.exists():
            dest.unlink()
        r = self.lb.run(self.repo, "pg", "wal-fetch", name, dest, "--pgdata", self.pgdata)
        if r.rc != 0:
            return None, r
        digest = sha256_file(dest)
        dest.unlink()
        return digest, r

    def verify_after_kill(self, running, stats):
        """Every segment wal-push acknowledged is in the spool or in the repository; with
        `wal-push --drain SEGMENT` in the repository."""
        problems = []
        in_spool = in_repo = 0
        for name in self.acked:
            ready = self.spool / "ready" / name
            if self.mode != "drain" and ready.exists() and sha256_file(ready) == self.hashes[name]:
                in_spool += 1
                continue
            digest, r = self.fetch(name)
            if digest == self.hashes[name]:
                in_repo += 1
                continue
            where = "in neither the spool nor the repository" if self.mode != "drain" else "not in the repository"
            problems.append(
                "segment %s was acknowledged (wal-push%s exit 0) but is %s: %s"
                % (name, " --drain" if self.mode == "drain" else "", where,
                   "wal-fetch gave other bytes" if digest else "\n" + r.describe(4))
            )
        if problems:
            problems.append("processes with the spool's pusher.lock open: %s; the run's output is in %s"
                            % (holders_of(self.spool / "pusher.lock"), self.log("run")))
        if self.counting:
            stats.extra["segments acknowledged before a kill"] += len(self.acked)
            stats.extra["... of which found in the spool"] += in_spool
            stats.extra["... of which fetched from the repository"] += in_repo
        if problems:
            raise VerifyError("wal ack", "\n".join(problems))

    def judge_wal(self, snap, got):
        if snap.get("source") != "postgres-wal":
            return "a snapshot this test did not expect (source %s)" % snap.get("source")
        bad = [n for n, h in got.items() if self.hashes.get(n) != h]
        if bad or not got:
            return "%d file(s) that are not the segments pushed: %s" % (len(bad), bad[:5]) if bad else "an empty WAL snapshot"
        return None

    def restore_all(self, repo=None, judge=None):
        return OpTest.restore_all(self, repo, judge or self.judge_wal)

    def next_run(self, stats):
        # PostgreSQL retries the segment whose archiving it did not see succeed, then goes on.
        drain = self.mode == "drain"
        for name in self.names:
            if name in self.acked:
                continue
            r = self.lb.run(self.repo, *self.push_args(name, drain))
            if r.rc != 0:
                raise VerifyError("next run", "wal-push of %s (again) failed\n%s" % (name, r.describe()))
        if not self.wait_for_pushers(120):
            raise VerifyError("next run", "the background pusher did not leave within 120 s")
        self.drain_by_hand()
        problems = []
        for name in self.names:
            digest, r = self.fetch(name)
            if digest != self.hashes[name]:
                problems.append("segment %s: wal-fetch %s\n%s" % (name, "gave other bytes" if digest else "failed", r.describe(4)))
        if problems:
            raise VerifyError("next run", "\n".join(problems))
        for name in self.names:
            (self.wal / name).unlink()

    def record_snapshots(self, i):
        for s in self.snapshots():
            self.snap_iteration.setdefault(s["id"], i)

    def maintain(self, i):
        # Keep this iteration's snapshots (so the next check and restore see them after
        # another kill); prune now and then.
        self.record_snapshots(i)
        old = [sid for sid, it in self.snap_iteration.items() if it < i]
        self.forget(old)
        for sid in old:
            del self.snap_iteration[sid]
        if i % 10 == 9:
            self.prune()

    def final(self, stats):
        OpTest.final(self, stats)
        left = [self.spool / "tmp" / n for n in _listdir(self.spool / "tmp")]
        stats.extra["spool tmp/ files killed wal-pushes left"] = len(left)
        stats.extra["... their MiB"] = sum(p.stat().st_size for p in left) // MIB


class WalRunning(Running):
    """The archiver (wal-push after wal-push) and the background pushers it starts."""

    def __init__(self, seq, test):
        super().__init__(seq)
        self.test = test
        self.checked_at = 0.0
        self.done = False
        self.killed_pushers = 0

    def finished(self):
        if self.done:
            return True
        if not self.seq.finished():
            return False
        if self.test.mode == "drain":
            self.done = True
            return True
        now = time.monotonic()
        if now - self.checked_at < 0.02:
            return False
        self.checked_at = now
        if self.test.ready() or self.test.pushers():
            return False
        self.done = True
        return True

    def kill(self):
        label = self.seq.kill()
        if label:
            self.killed_what.append("foreground wal-push" + (" --drain" if self.test.mode == "drain" else ""))
        # Then every pusher (a wal-push killed while it started one may have left a child).
        quiet_rounds = 0
        while quiet_rounds < 3:
            pids = self.test.pushers()
            if not pids:
                quiet_rounds += 1
                time.sleep(0.005)
                continue
            quiet_rounds = 0
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed_pushers += 1
                except ProcessLookupError:
                    pass
                reap(pid)
        if self.killed_pushers:
            self.killed_what.append("background pusher")


OPS = {
    "backup": BackupTest,
    "prune": PruneTest,
    "copy": CopyTest,
    "repair": RepairTest,
    "wal-push": WalTest,
}


# ---------------------------------------------------------------------------------------------
# Driver


class Context:
    def __init__(self, args, scratch, restore_dir):
        self.args = args
        self.seed = args.seed
        self.scratch = scratch
        self.restore_dir = restore_dir
        self.lb = Lifeboat(args.bin, scratch)


def reap_orphans():
    """Reaps exited orphans (background pushers whose wal-push is gone). Only called when
    none of our subprocess.Popen children is outstanding, so it cannot take their status."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def one_run(test, i, mode, point, stats, counted):
    """Prepares, runs (and kills at `point`), verifies. Returns (outcome, seconds, watcher
    counts, failure or None) where failure is (stage, message)."""
    reap_orphans()
    test.counting = counted
    t0 = time.monotonic()
    steps = test.prepare(i, test.rng("iteration-%d" % i if i >= 0 else "measure-%s" % mode), mode)
    watcher = test.watch()
    t_prepare = time.monotonic() - t0
    running = test.start(steps, mode)
    measured = stats.measured.get(mode, (60.0, None))[0]
    outcome, seconds = run_and_kill(running, watcher, point, measured)
    watcher.drain()
    watcher.close()
    killed = running.killed()
    if counted:
        stats.iterations += 1
        if point.kind == "delay":
            stats.delay_kills += 1
        else:
            stats.trigger_kills += 1
        if killed:
            stats.killed += 1
            stats.last_events[watcher.last_event() or "(before any object)"] += 1
            for what in running.killed_what:
                stats.killed_step[what] += 1
        else:
            stats.finished_first += 1
    ok = {"check": False, "restore": False, "next": False}
    failure = None
    times = {"prepare": t_prepare, "run": seconds}
    mark = [time.monotonic()]

    def took(what):
        now = time.monotonic()
        times[what] = now - mark[0]
        mark[0] = now

    try:
        if outcome == "hung":
            raise VerifyError("run", "the operation did not end within %.0f s (killed)" % seconds)
        own = running.failed_on_its_own()
        if own:
            raise VerifyError("run", "the operation failed on its own: %s (log: %s)" % (own, test.log("run")))
        test.after_run(running, outcome)
        test.verify_after_kill(running, stats)
        took("verify")
        if test.check_after_next_run:
            test.next_run(stats)
            ok["next"] = True
            took("next")
        stats.notes += len(test.check())
        ok["check"] = True
        took("check")
        stats.snapshots_restored += test.restore_all()
        ok["restore"] = True
        took("restore")
        if not test.check_after_next_run:
            test.next_run(stats)
            ok["next"] = True
            took("next")
        test.maintain(i)
        took("maintain")
    except VerifyError as e:
        failure = (e.stage, str(e))
    except SetupError as e:
        failure = ("maintenance", str(e))
    if counted:
        stats.check_ok += ok["check"]
        stats.restore_ok += ok["restore"]
        stats.next_ok += ok["next"]
    summary = "%s after %.3f s (last object event: %s)" % (
        "killed" if killed else "finished before the kill", seconds, watcher.last_event() or "none")
    if test.ctx.args.verbose:
        summary += " [%s]" % " ".join("%s %.2f" % kv for kv in times.items())
    return outcome, seconds, dict(watcher.counts), failure, summary


def run_op(ctx, name, failures):
    args = ctx.args
    stats = Stats(name)
    started = time.monotonic()
    test = OPS[name](ctx)
    say = lambda msg: print("[%s] %s" % (name, msg), flush=True)  # noqa: E731

    def fail(iteration, point, spec, stage, message):
        stats.failures += 1
        failures.append(Failure(name, iteration, ctx.seed, point, spec, stage, message))
        say("FAILED (%s) at iteration %s, %s: %s" % (stage, iteration, point, message.splitlines()[0]))

    # One normal run per mode, watched: how long it takes and what it writes; it is verified
    # like the killed runs.
    try:
        test.setup()
        for k, mode in enumerate(test.modes):
            scratch_stats = Stats(name)
            outcome, seconds, counts, failure, _ = one_run(test, -1 - k, mode, KillPoint("none"), scratch_stats, False)
            if outcome != "finished" or failure:
                raise SetupError("the measured normal run%s did not pass: %s\n%s" % (
                    "" if mode == "normal" else " (%s)" % mode, outcome, failure[1] if failure else ""))
            stats.measured[mode] = (seconds, counts)
            say("measured %s run: %.3f s, %s" % (mode, seconds, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    except (SetupError, VerifyError, subprocess.CalledProcessError) as e:
        fail("setup", "-", None, "setup", str(e))
        stats.seconds = time.monotonic() - started
        if not args.keep:
            shutil.rmtree(test.dir, ignore_errors=True)
        return stats

    points = schedule(args.iterations, lambda i: stats.measured[test.mode_for(i)], test.rng("schedule"))
    only = args.only_iteration
    for i in range(args.iterations):
        if only is not None and i > only:
            break
        mode = test.mode_for(i)
        point = points[i]
        if only is not None and i < only and not args.earlier_kills:
            point = KillPoint("none")
        elif only is not None and args.kill_point:
            point = KillPoint.parse(args.kill_point)
            point.duration = stats.measured[mode][0]
        label = "%s%s" % (point, "" if len(test.modes) == 1 else ", mode %s" % mode)
        test.iteration, test.point = i, label
        counted = point.kind != "none"
        try:
            outcome, seconds, _, failure, summary = one_run(test, i, mode, point, stats, counted)
        except (SetupError, VerifyError) as e:
            fail(i, label, point.spec(), "prepare", str(e))
            continue
        if failure:
            fail(i, "%s; %s" % (label, summary), point.spec(), failure[0], failure[1])
        if args.verbose:
            say("iteration %d: %s -> %s: %s" % (i, label, summary, "FAILED" if failure else "ok"))
        if stats.failures >= args.max_failures:
            say("stopping after %d failures" % stats.failures)
            break
    try:
        test.final(stats)
    except (VerifyError, SetupError) as e:
        fail("final", "-", None, "final " + getattr(e, "stage", "check"), str(e))
    for k, v in sorted(getattr(test, "damage_log", {}).items()):
        stats.extra["damage: " + k] = v
    if getattr(test, "healed_total", 0):
        stats.extra["snapshots the reference repair rewrote, found complete after a kill"] = test.healed_total
    stats.seconds = time.monotonic() - started
    say("%d iterations, %d killed mid-run, %d failure(s), %s" % (
        stats.iterations, stats.killed, stats.failures, fmt_seconds(stats.seconds)))
    reap_orphans()
    if not args.keep:
        shutil.rmtree(test.dir, ignore_errors=True)
    return stats


def table(all_stats):
    rows = [
        "| operation | iterations | killed mid-run | finished before the kill | kill moments (delay / object trigger) | check passed | restores passed (snapshots restored) | next run passed | failures | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in all_stats:
        rows.append(
            "| %s | %d | %d | %d | %d / %d | %d/%d | %d/%d (%d) | %d/%d | %d | %s |"
            % (
                s.op, s.iterations, s.killed, s.finished_first, s.delay_kills, s.trigger_kills,
                s.check_ok, s.iterations, s.restore_ok, s.iterations, s.snapshots_restored,
                s.next_ok, s.iterations, s.failures, fmt_seconds(s.seconds),
            )
        )
    return "\n".join(rows)


def fmt_seconds(s):
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%.0fs" % s


def details(all_stats):
    lines = []
    for s in all_stats:
        lines.append("- **%s**:" % s.op)
        for mode, (sec, counts) in s.measured.items():
            lines.append(
                "  measured %s run %.2f s (%s);" % (
                    "a" if mode == "normal" else "a " + mode, sec,
                    ", ".join("%s %d" % kv for kv in sorted(counts.items())) or "no objects")
            )
        if s.last_events:
            lines.append("  last object event before the kill: %s;" % ", ".join(
                "%s %d" % kv for kv in sorted(s.last_events.items(), key=lambda kv: -kv[1])))
        if s.killed_step:
            lines.append("  killed: %s;" % ", ".join("%s %d" % kv for kv in sorted(s.killed_step.items())))
        if s.extra:
            lines.append("  %s;" % ", ".join("%s: %d" % kv for kv in s.extra.items()))
        lines.append("  check notes (not errors) after the kills: %d." % s.notes)
    return "\n".join(lines)


def main():
    root = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=str(root / "target" / "release" / "lifeboat"), help="the lifeboat binary (default: target/release/lifeboat)")
    p.add_argument("--iterations", type=int, default=50, help="kills per operation (default 50)")
    p.add_argument("--ops", default=",".join(ALL_OPS), help="comma-separated, from %s (default: all)" % ",".join(ALL_OPS))
    p.add_argument("--seed", type=int, default=None, help="seed of data and kill points (default: random, printed)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--scratch", default="/tmp", help="where to make the scratch directory (default /tmp)")
    p.add_argument("--restore-dir", default="/dev/shm", help="where restores go (default /dev/shm if writable; `scratch` for the scratch directory)")
    p.add_argument("--only-iteration", type=int, default=None, metavar="I",
                   help="replay: run the iterations before I without a kill (same data), then I, then stop")
    p.add_argument("--kill-point", default=None, metavar="SPEC",
                   help="with --only-iteration: delay=SECONDS or trigger=EVENT:N instead of the scheduled one")
    p.add_argument("--earlier-kills", action="store_true",
                   help="with --only-iteration: kill the iterations before I too, at their scheduled points "
                        "(closer to the original run's state; timing still differs)")
    p.add_argument("--max-failures", type=int, default=3, help="stop an operation after this many failures (default 3)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per iteration")
    args = p.parse_args()

    args.bin = str(Path(args.bin).resolve())
    if not os.access(args.bin, os.X_OK):
        p.error("no lifeboat binary at %s (build it: cargo build --release -p lifeboat-cli)" % args.bin)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in ops:
        if o not in OPS:
            p.error("unknown operation %r (choose from %s)" % (o, ", ".join(ALL_OPS)))
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    if args.only_iteration is not None:
        args.iterations = max(args.iterations, args.only_iteration + 1)

    become_subreaper()
    scratch = Path(tempfile.mkdtemp(prefix="lifeboat-kill9-", dir=args.scratch))
    # Restores go to memory when there is a tmpfs: a restore to a loaded VM's disk takes
    # three times as long, and what is checked is the repository, not the target disk.
    restore_dir = scratch / "restore"
    if args.restore_dir != "scratch" and os.access(args.restore_dir, os.W_OK):
        restore_dir = Path(tempfile.mkdtemp(prefix="lifeboat-kill9-restore-", dir=args.restore_dir))
    restore_dir.mkdir(exist_ok=True)
    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    print("kill9.py: %s, seed %d, %d iteration(s) per operation, ops %s, scratch %s" % (
        version, args.seed, args.iterations, ",".join(ops), scratch), flush=True)
    started = time.monotonic()
    failures = []
    all_stats = []
    try:
        ctx = Context(args, scratch, restore_dir)
        for name in ops:
            all_stats.append(run_op(ctx, name, failures))
    finally:
        shutil.rmtree(restore_dir, ignore_errors=True)
        if args.keep:
            print("kill9.py: kept %s" % scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(table(all_stats))
    print()
    print(details(all_stats))
    print()
    print("seed %d; total %s" % (args.seed, fmt_seconds(time.monotonic() - started)))
    if failures:
        print("\n%d FAILURE(S):" % len(failures))
        for f in failures:
            print("\n- %s, iteration %s, seed %d, kill point: %s; stage: %s" % (f.op, f.iteration, f.seed, f.point, f.stage))
            if isinstance(f.iteration, int):
                print("  replay: %s --bin %s --ops %s --seed %d --iterations %d --only-iteration %d --kill-point %s" % (
                    sys.argv[0], args.bin, f.op, f.seed, args.iterations, f.iteration, f.spec))
            for line in f.message.splitlines():
                print("    " + line)
        return 1
    print("all verifications passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
