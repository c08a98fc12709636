#!/usr/bin/env python3
"""S3 benchmark: backup and restore through an S3 server, lifeboat against
restic's s3 backend, both writing to the same local Garage server on loopback
in the same run (stdlib only; the helpers come from bench.py).

Normally started by `bench/run.sh --s3`, which installs restic, builds
lifeboat if needed and prepares the dataset first.  Direct use:

    bench/s3.py --dataset NAME=DIR [--dataset ...] [--runs 3]
                [--connections 2,8,32] [--sweep-runs 1] [--no-sweep]
                [--scratch /tmp/lifeboat-bench] [--results-dir bench/results]
                [--lifeboat-bin PATH] [--garage-bin PATH] [--password-mode]
                [--timeout 3600]
    bench/s3.py --report RESULTS.json [...]

Garage (${LIFEBOAT_GARAGE:-~/.cache/lifeboat-tools/garage/bin/garage}) is
started once, as crates/cli/tests/common/garage.rs does: a single node with
its data and metadata under the scratch dir, rpc/S3/admin ports free on
127.0.0.1, a layout, one key and one bucket.  Block compression is off
(`compression_level = "none"`: both tools upload compressed, encrypted
data, so it would only burn the CPU the clients share with the server).
It is killed at the end, also on errors, Ctrl-C and SIGTERM (and by the
kernel should this process die: PR_SET_PDEATHSIG).

Per run (--runs) and tool, on a fresh prefix of the bucket (a fresh repository):
  init (untimed) -> initial backup (timed, peak RSS) -> repository size (the
  sum of the prefix's object sizes, listed over S3) -> the tool's local cache
  dir is emptied -> full restore of that snapshot into an empty dir (timed,
  peak RSS; cold client cache, the server's files are in the page cache) ->
  restore check (regular-file count and bytes equal the source's).
Then the connections sweep, lifeboat only: an initial backup to a fresh
prefix with `--connections N` for every N of --connections (--sweep-runs
each), to show how wall time and peak RSS move as connections grow.

Wall time and peak RSS as in bench.py (run_cmd: the client's process tree
only, never the server's).  Garage's own peak RSS (VmHWM) and the S3 requests
of each timed command (from Garage's metrics) are kept in the JSON.

Markdown goes to stdout, progress to stderr, raw results to
RESULTS_DIR/s3-<date>.json.
"""

import argparse
import ctypes
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

import bench as B

TOOLS = ["lifeboat", "restic"]
TARGETS = {"initial": 0.6, "restore": 0.6}   # lifeboat ÷ restic wall time, at most
PHASE_LABEL = {"initial": "initial backup", "restore": "full restore"}
DEFAULT_CONNECTIONS = [2, 8, 32]
REGION = "garage"
BUCKET = "lifeboat-bench"
STRIP_AWS = re.compile(r"^AWS_")
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def log(msg):
    print("[s3 %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def garage_binary(given=None):
    if given:
        return given
    if os.environ.get("LIFEBOAT_GARAGE"):
        return os.environ["LIFEBOAT_GARAGE"]
    cached = os.path.expanduser("~/.cache/lifeboat-tools/garage/bin/garage")
    if os.access(cached, os.X_OK):
        return cached
    return shutil.which("garage") or cached


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all held open while picking)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent():
    """preexec_fn: the kernel kills the server (SIGKILL) if this process dies
    without cleaning up (e.g. SIGKILL), as the Rust tests' spawn_server does."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Garage:
    """One single-node Garage server with a key and a bucket."""

    def __init__(self, binary, base):
        self.binary = binary
        self.base = base
        self.proc = None
        self.key_id = self.secret = None
        self.bucket = BUCKET

    # ---- server
    def start(self):
        os.makedirs(self.base, exist_ok=True)
        self.rpc_port, self.s3_port, self.admin_port = free_ports(3)
        self.config = os.path.join(self.base, "garage.toml")
        with open(self.config, "w") as f:
            f.write('''metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
'''.format(meta=os.path.join(self.base, "meta"), data=os.path.join(self.base, "data"),
           rpc=self.rpc_port, s3=self.s3_port, admin=self.admin_port,
           secret=secrets.token_hex(32), region=REGION))
        self.log_path = os.path.join(self.base, "server.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
        env["RUST_LOG"] = "garage=warn"
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen([self.binary, "-c", self.config, "server"], env=env,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        log("garage started (pid %d): S3 on 127.0.0.1:%d, data under %s"
            % (self.proc.pid, self.s3_port, self.base))
        self.cli_ok(["status"])
        node = self.cli_ok(["node", "id", "-q"]).strip().split("@")[0]
        self.cli_ok(["layout", "assign", "-z", "dc1", "-c", "1G", node])
        self.cli_ok(["layout", "apply", "--version", "1"])
        key = self.cli_ok(["key", "create", "lifeboat-bench"])

        def field(label):
            for line in key.splitlines():
                if line.startswith(label):
                    return line[len(label):].strip()
            raise RuntimeError("no %r in `garage key create` output:\n%s" % (label, key))

        self.key_id, self.secret = field("Key ID:"), field("Secret key:")
        self.cli_ok(["bucket", "create", self.bucket])
        self.cli_ok(["bucket", "allow", "--read", "--write", "--owner", self.bucket,
                     "--key", "lifeboat-bench"])
        # the S3 endpoint answers once the layout has reached it
        deadline = time.monotonic() + 60
        while True:
            try:
                self.list_prefix("probe/")
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    raise RuntimeError("Garage's S3 endpoint does not answer: %s" % e)
                time.sleep(0.2)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cli(self, args, timeout=30):
        return subprocess.run([self.binary, "-c", self.config] + args, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def cli_ok(self, args):
        """Runs a garage command until it succeeds (a new cluster takes a moment)."""
        deadline = time.monotonic() + 60
        while True:
            if not self.alive():
                raise RuntimeError("garage server exited (%s); log tail:\n%s"
                                   % (self.proc.returncode if self.proc else "?",
                                      B.tail(self.log_path)))
            try:
                r = self.cli(args)
                if r.returncode == 0:
                    return r.stdout
                err = r.stderr.strip()
            except subprocess.TimeoutExpired:
                err = "timed out"
            if time.monotonic() > deadline:
                raise RuntimeError("garage %s keeps failing: %s" % (" ".join(args), err))
            time.sleep(0.2)

    def peak_rss_kib(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        log("garage stopped (pid %d, exit %s)" % (self.proc.pid, self.proc.returncode))
        self.proc = None

    def version(self):
        return B.capture([self.binary, "--version"]).splitlines()[0] if self.binary else "n/a"

    # ---- clients
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.s3_port

    def url(self, prefix):
        return "s3:%s/%s/%s" % (self.endpoint(), self.bucket, prefix)

    def client_env(self):
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}

    def s3(self, method, path, query):
        """One SigV4-signed request without a body; returns (status, body)."""
        host = "127.0.0.1:%d" % self.s3_port
        amz = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        day = amz[:8]
        payload = hashlib.sha256(b"").hexdigest()

        def enc(s):
            return urllib.parse.quote(s, safe="-_.~")

        cq = "&".join("%s=%s" % (enc(k), enc(v)) for k, v in sorted(query.items()))
        cu = urllib.parse.quote(path, safe="/-_.~")
        hd = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz}
        signed = ";".join(sorted(hd))
        canon = "\n".join([method, cu, cq, "".join("%s:%s\n" % (k, hd[k]) for k in sorted(hd)),
                           signed, payload])
        scope = "%s/%s/s3/aws4_request" % (day, REGION)
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                             hashlib.sha256(canon.encode()).hexdigest()])
        k = ("AWS4" + self.secret).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        hd["Authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                               "Signature=%s" % (self.key_id, scope, signed, sig))
        c = http.client.HTTPConnection("127.0.0.1", self.s3_port, timeout=60)
        try:
            c.request(method, cu + ("?" + cq if cq else ""), headers=hd)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def list_prefix(self, prefix):
        """(objects, bytes) under prefix, by ListObjectsV2."""
        objects = nbytes = 0
        token = None
        while True:
            q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            status, body = self.s3("GET", "/" + self.bucket, q)
            if status != 200:
                raise RuntimeError("ListObjectsV2 %s: HTTP %d %s" % (prefix, status, body[:300]))
            root = ET.fromstring(body)
            for c in root.iter(S3_NS + "Contents"):
                objects += 1
                nbytes += int(c.findtext(S3_NS + "Size") or 0)
            if (root.findtext(S3_NS + "IsTruncated") or "false") != "true":
                return objects, nbytes
            token = root.findtext(S3_NS + "NextContinuationToken")
            if not token:
                return objects, nbytes

    def requests(self):
        """S3 requests served so far by API endpoint, from the admin API's /metrics."""
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode("utf-8", "replace")
            c.close()
        except OSError:
            return None
        counts = {}
        for line in text.splitlines():
            if not line.startswith("api_s3_request_counter{"):
                continue
            m = re.search(r'api_endpoint="([^"]+)"', line)
            try:
                v = float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + int(v)
        return counts


def req_diff(before, after):
    if before is None or after is None:
        return None
    d = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    d["total"] = sum(d.values())
    return d


class S3Bench(B.Bench):

    def __init__(self, args):
        super().__init__(args)
        self.garage = None

    def tool_env(self, tool, ctx):
        env = ctx.env(tool.env(ctx))
        env = {k: v for k, v in env.items() if not STRIP_AWS.match(k)}
        env.update(self.garage.client_env())
        # lifeboat's cache: XDG_CACHE_HOME (ctx.env) for older binaries, --cache-dir's
        # variable for newer ones; restic's: RESTIC_CACHE_DIR (bench.Restic.env).  All of
        # them under ctx.cache, which is emptied before the restore.
        env["LIFEBOAT_CACHE_DIR"] = os.path.join(ctx.cache, "lifeboat")
        return env

    def timed_s3(self, cmd, env, cwd, logbase):
        before = self.garage.requests()
        r = self.timed(cmd, env, cwd, logbase)
        r["requests"] = req_diff(before, self.garage.requests())
        return r

    def fresh(self, dsname, name, data):
        """A fresh scratch dir and a fresh bucket prefix (= repository)."""
        base = os.path.join(self.scratch, "s3-" + dsname, name)
        self.wipe(base)
        ctx = B.Ctx(base, data)
        ctx.make()
        ctx.prefix = "%s-%s-%s" % (dsname, name, self.stamp.strftime("%H%M%S"))
        ctx.repo = self.garage.url(ctx.prefix)
        return ctx

    def repo_size(self, ctx):
        try:
            n, b = self.garage.list_prefix(ctx.prefix + "/")
            return {"objects": n, "bytes": b}
        except Exception as e:
            log("listing %s failed: %s" % (ctx.prefix, e))
            return None

    def one_run(self, tool, ds, dsname, run, logdir):
        ctx = self.fresh(dsname, "%s-run%d" % (tool.name, run), ds["path"])
        env = self.tool_env(tool, ctx)
        logpre = os.path.join(logdir, "%s-run%d" % (tool.name, run))
        res = {"run": run, "prefix": ctx.prefix}

        def failed(phase, r):
            msg = "exit %s%s" % (r["rc"], " (timeout)" if r.get("timed_out") else "")
            tl = B.tail(r["log"] + ".err") or B.tail(r["log"] + ".out")
            log("%s %s FAILED: %s; stderr tail:\n%s" % (tool.name, phase, msg, tl))
            res["error"] = "%s: %s" % (phase, msg)
            res["error_tail"] = tl
            return res

        try:
            for i, cmd in enumerate(tool.init_cmds(ctx)):
                r = self.timed(cmd, env, ctx.base, "%s-init%d" % (logpre, i))
                res.setdefault("init", []).append(r)
                if r["rc"] != 0:
                    return failed("init", r)
            self.warm(ds["path"])
            r = self.timed_s3(tool.backup_cmd(ctx, 1), env, ctx.base, logpre + "-initial")
            res["initial"] = r
            if r["rc"] != 0:
                return failed("initial", r)
            res["repo"] = self.repo_size(ctx)
            log("%s run %d initial backup: %.2fs, %.0f MiB RSS, %s S3 requests; repository %s"
                % (tool.name, run, r["seconds"], r["peak_kib"] / 1024,
                   (r["requests"] or {}).get("total", "?"),
                   "%.1f MiB in %d objects" % (res["repo"]["bytes"] / B.MiB, res["repo"]["objects"])
                   if res["repo"] else "?"))
            # cold client cache for the restore
            self.wipe(ctx.cache)
            os.makedirs(ctx.cache)
            r = self.timed_s3(tool.restore_cmd(ctx), env, tool.restore_cwd(ctx) or ctx.base,
                              logpre + "-restore")
            res["restore"] = r
            if r["rc"] != 0:
                return failed("restore", r)
            got = B.tree_stats(ctx.target)
            want = (ds["files"], ds["file_bytes"])
            res["verify"] = {"files": got[0], "bytes": got[1], "ok": tuple(got) == want}
            log("%s run %d restore: %.2fs, %.0f MiB RSS, %s S3 requests; check %s"
                % (tool.name, run, r["seconds"], r["peak_kib"] / 1024,
                   (r["requests"] or {}).get("total", "?"),
                   "ok" if res["verify"]["ok"] else
                   "FAILED (%d files / %d bytes, want %d / %d)" % (got + want)))
            return res
        finally:
            self.wipe(ctx.base)

    def sweep_run(self, tool, ds, dsname, conns, run, logdir):
        ctx = self.fresh(dsname, "%s-c%d-run%d" % (tool.name, conns, run), ds["path"])
        env = self.tool_env(tool, ctx)
        logpre = os.path.join(logdir, "%s-connections%d-run%d" % (tool.name, conns, run))
        res = {"connections": conns, "run": run, "prefix": ctx.prefix}
        try:
            for i, cmd in enumerate(tool.init_cmds(ctx)):
                r = self.timed(cmd, env, ctx.base, "%s-init%d" % (logpre, i))
                if r["rc"] != 0:
                    res["error"] = "init: exit %s" % r["rc"]
                    res["error_tail"] = B.tail(r["log"] + ".err")
                    log("%s --connections %d init FAILED:\n%s" % (tool.name, conns,
                                                                  res["error_tail"]))
                    return res
            self.warm(ds["path"])
            cmd = tool.backup_cmd(ctx, 1) + ["--connections", str(conns)]
            r = self.timed_s3(cmd, env, ctx.base, logpre + "-initial")
            res["initial"] = r
            if r["rc"] != 0:
                res["error"] = "initial: exit %s%s" % (r["rc"], " (timeout)" if r["timed_out"]
                                                       else "")
                res["error_tail"] = B.tail(r["log"] + ".err") or B.tail(r["log"] + ".out")
                log("%s --connections %d backup FAILED:\n%s" % (tool.name, conns,
                                                                res["error_tail"]))
                return res
            res["repo"] = self.repo_size(ctx)
            log("%s --connections %d run %d initial backup: %.2fs, %.0f MiB RSS"
                % (tool.name, conns, run, r["seconds"], r["peak_kib"] / 1024))
            return res
        finally:
            self.wipe(ctx.base)

    def run_dataset(self, dsname, data):
        a = self.args
        data = os.path.abspath(data)
        st = B.read_stamp(data)
        label = B.dataset_label(dsname, st)
        log("dataset %s: %s" % (label, data))
        B.Mutation.recover(data)
        t0 = time.monotonic()
        files, nbytes = B.tree_stats(data)
        log("scanned %d files in %.1fs" % (files, time.monotonic() - t0))
        ds = {"name": dsname, "label": label, "path": data, "files": files,
              "file_bytes": nbytes, "du_bytes": B.du_bytes(data), "stamp": st}
        logdir = os.path.join(self.logdir, "s3-" + dsname)
        os.makedirs(logdir, exist_ok=True)
        tools = [self.tools[n] for n in a.tools]
        results = {t.name: {"runs": []} for t in tools}
        for t in tools:
            if not t.binary:
                results[t.name].update(status="n/a", reason="binary not found")
                log("%s: not installed, shown as n/a" % t.name)
        for run in range(1, a.runs + 1):
            for t in tools:
                rt = results[t.name]
                if rt.get("status") in ("n/a", "fail"):
                    continue
                log("%s run %d/%d on %s" % (t.name, run, a.runs, dsname))
                res = self.one_run(t, ds, dsname, run, logdir)
                rt["runs"].append(res)
                if "error" in res:
                    rt["status"] = "fail"  # do not repeat a failing tool
        for t in tools:
            results[t.name].setdefault("status", "ok")
        sweep = {"connections": a.connections, "runs": []}
        lb = self.tools.get("lifeboat")
        if a.connections and lb and lb.binary and "lifeboat" in a.tools:
            failing = set()
            for run in range(1, a.sweep_runs + 1):
                for conns in a.connections:
                    if conns in failing:
                        continue
                    res = self.sweep_run(lb, ds, dsname, conns, run, logdir)
                    sweep["runs"].append(res)
                    if "error" in res:
                        failing.add(conns)
        return {"dataset": ds, "tools": results, "sweep": sweep,
                "summary": summarize(results, sweep)}


def summarize(results, sweep):
    s = {"tools": {}, "sweep": {}}
    for name, rt in results.items():
        d = {"status": rt["status"]}
        for ph in ("initial", "restore"):
            ok = [r[ph] for r in rt["runs"] if ph in r and r[ph]["rc"] == 0]
            if ok:
                d[ph + "_s"] = statistics.median(x["seconds"] for x in ok)
                d[ph + "_spread"] = B.spread([x["seconds"] for x in ok])
                d[ph + "_rss_mib"] = max(x["peak_kib"] for x in ok) / 1024
                reqs = [x["requests"]["total"] for x in ok if x.get("requests")]
                if reqs:
                    d[ph + "_requests"] = statistics.median(reqs)
        sizes = [r["repo"]["bytes"] for r in rt["runs"] if r.get("repo")]
        if sizes:
            d["repo_mib"] = statistics.median(sizes) / B.MiB
            d["repo_objects"] = statistics.median(r["repo"]["objects"] for r in rt["runs"]
                                                  if r.get("repo"))
        ver = [r["verify"]["ok"] for r in rt["runs"] if "verify" in r]
        if ver:
            d["restore_verified"] = all(ver)
        errs = [r["error"] for r in rt["runs"] if "error" in r]
        if errs:
            d["error"] = errs[0]
        s["tools"][name] = d
    for conns in sweep.get("connections") or []:
        rs = [r for r in sweep["runs"] if r["connections"] == conns]
        ok = [r["initial"] for r in rs if "initial" in r and r["initial"]["rc"] == 0]
        d = {}
        if ok:
            d["initial_s"] = statistics.median(x["seconds"] for x in ok)
            d["initial_spread"] = B.spread([x["seconds"] for x in ok])
            d["initial_rss_mib"] = max(x["peak_kib"] for x in ok) / 1024
            reqs = [x["requests"]["total"] for x in ok if x.get("requests")]
            if reqs:
                d["initial_requests"] = statistics.median(reqs)
        errs = [r["error"] for r in rs if "error" in r]
        if errs:
            d["error"] = errs[0]
        s["sweep"][str(conns)] = d
    return s


def yes_no(r, limit):
    if r is None:
        return "n/a"
    return "met" if r <= limit else "**not met**"


def report(res, header=None):
    ds = res["dataset"]
    s = res["summary"]
    st = s["tools"]
    lb, rs = st.get("lifeboat", {}), st.get("restic", {})
    L = ["### S3 (Garage on loopback) on `%s`" % ds["label"], ""]
    L.append("`%s`: %d regular files, %.0f MiB of file data (du -sb %.0f MiB). Each run: a fresh "
             "repository (a fresh prefix of one bucket) per tool; restore from that run's "
             "repository with an emptied cache dir (cold client cache; the server's files are "
             "in the page cache). Wall time: median of the runs; peak RSS: max over the runs, "
             "the client's process tree only."
             % (ds["path"], ds["files"], ds["file_bytes"] / B.MiB, (ds["du_bytes"] or 0) / B.MiB))
    L.append("")

    def cell(d, key, fmt):
        if d.get("status") == "n/a":
            return "n/a"
        if key not in d:
            return "fail" if d.get("error") else "n/a"
        text = fmt(d[key])
        if key.endswith("_s"):
            text += B.fmt_spread(d.get(key[:-2] + "_spread"))
        return text

    def count(v):
        return "%.0f" % v

    cols = [("initial_s", "initial backup, s", B.fmt_s),
            ("restore_s", "restore, s", B.fmt_s),
            ("initial_rss_mib", "peak RSS initial, MiB", B.fmt_mib),
            ("restore_rss_mib", "peak RSS restore, MiB", B.fmt_mib),
            ("repo_mib", "repository, MiB", B.fmt_mib),
            ("repo_objects", "objects", count),
            ("initial_requests", "S3 requests initial", count),
            ("restore_requests", "S3 requests restore", count)]
    L.append("| tool | " + " | ".join(c[1] for c in cols) + " |")
    L.append("|---|" + "---:|" * len(cols))
    tools = list(res["tools"])
    for t in tools:
        L.append("| %s | " % t + " | ".join(cell(st[t], k, f) for k, _, f in cols) + " |")
    if "lifeboat" in st and "restic" in st:
        L.append("| lifeboat ÷ restic | " + " | ".join(
            B.fmt_ratio(B.ratio(lb.get(k), rs.get(k))) for k, _, _ in cols) + " |")
    L.append("")
    for ph in ("initial", "restore"):
        r = B.ratio(lb.get(ph + "_s"), rs.get(ph + "_s"))
        word = "backup" if ph == "initial" else "restore"
        L.append("- target: %s ≤ %g× restic — %s (%s)" % (
            word, TARGETS[ph], yes_no(r, TARGETS[ph]),
            "lifeboat ÷ restic = %s" % B.fmt_ratio(r) if r is not None else "not measured"))
    L.append("")

    sw = s.get("sweep") or {}
    conns = res.get("sweep", {}).get("connections") or []
    if conns:
        L.append("Connections sweep, lifeboat only: initial backup to a fresh repository with "
                 "`--connections N` (default 8); %d run(s) each." % max(
                     [r["run"] for r in res["sweep"]["runs"]] or [0]))
        L.append("")
        L.append("| --connections | initial backup, s | peak RSS, MiB | RSS ÷ RSS at %d "
                 "| S3 requests |" % conns[0])
        L.append("|---:|---:|---:|---:|---:|")
        base = sw.get(str(conns[0]), {}).get("initial_rss_mib")
        for c in conns:
            d = sw.get(str(c), {})
            if "initial_s" not in d:
                L.append("| %d | %s | — | — | — |" % (c, "fail" if d.get("error") else "n/a"))
                continue
            L.append("| %d | %s | %s | %s | %s |" % (
                c, B.fmt_s(d["initial_s"]) + B.fmt_spread(d.get("initial_spread")),
                B.fmt_mib(d["initial_rss_mib"]),
                B.fmt_ratio(B.ratio(d["initial_rss_mib"], base)),
                count(d["initial_requests"]) if "initial_requests" in d else "—"))
        L.append("")
    notes = []
    for t in tools:
        d = st[t]
        if d["status"] == "n/a":
            notes.append("%s: n/a (%s)" % (t, res["tools"][t].get("reason", "")))
        elif "error" in d:
            notes.append("%s: failed at %s" % (t, d["error"]))
        if d.get("restore_verified") is False:
            notes.append("%s: restored tree did NOT match the source (file count/bytes)" % t)
    for c, d in sw.items():
        if d.get("error"):
            notes.append("lifeboat --connections %s: failed at %s" % (c, d["error"]))
    checked = [t for t in tools if st[t].get("restore_verified")]
    if checked:
        notes.append("restore check (regular-file count and bytes equal the source's) passed "
                     "for %s" % ", ".join(checked))
    g = res.get("garage") or {}
    if g.get("peak_rss_kib"):
        notes.append("Garage's own peak RSS over the whole run: %s MiB (not in the figures above)"
                     % B.fmt_mib(g["peak_rss_kib"] / 1024))
    notes.append("repository size = sum of the object sizes under the repository's prefix "
                 "(ListObjectsV2); S3 requests from Garage's metrics; restic with its default "
                 "s3.connections (5), lifeboat with its default (8)")
    L.append("Notes: " + "; ".join(notes) + ".")
    L.append("")
    return "\n".join(L)


def header_text(h):
    text = B.report_header(h).replace(
        "## lifeboat benchmark,", "## lifeboat S3 benchmark,").replace(
        "fresh repository each run", "fresh repository each run, restored with a cold cache")
    return text


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="lifeboat S3 benchmark (backup and restore "
                                             "through Garage, against restic)")
    ap.add_argument("--dataset", "--datasets", action="append", metavar="NAME=DIR")
    ap.add_argument("--report", nargs="+", metavar="JSON")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="lifeboat,restic")
    ap.add_argument("--connections", default=",".join(map(str, DEFAULT_CONNECTIONS)),
                    help="lifeboat's connections sweep: comma list (default 2,8,32)")
    ap.add_argument("--sweep-runs", type=int, default=1,
                    help="runs of each --connections value (default 1)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the connections sweep")
    ap.add_argument("--scratch", default=os.environ.get("BENCH_SCRATCH", "/tmp/lifeboat-bench"))
    ap.add_argument("--results-dir", default=os.path.join(here, "results"))
    ap.add_argument("--repo-root", default=os.path.dirname(here))
    ap.add_argument("--lifeboat-bin", default=os.environ.get(
        "LIFEBOAT_BIN", os.path.join(os.path.dirname(here), "target", "release", "lifeboat")))
    ap.add_argument("--garage-bin", default=None,
                    help="default $LIFEBOAT_GARAGE, ~/.cache/lifeboat-tools/garage/bin/garage, "
                         "garage on PATH")
    ap.add_argument("--password-mode", action="store_true")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", 3600)))
    ap.add_argument("--no-floors", action="store_true", help=argparse.SUPPRESS)  # run.sh passes it
    args = ap.parse_args()
    if args.report:
        for path in args.report:
            with open(path) as f:
                out = json.load(f)
            print(header_text(out["header"]))
            for res in out["datasets"]:
                res["summary"] = summarize(res["tools"], res["sweep"])
                print(report(res))
            print("_(raw results: `%s`)_\n" % os.path.relpath(path, args.repo_root))
        return 0
    if not args.dataset:
        ap.error("--dataset NAME=DIR is required (or --report JSON...)")
    if args.runs < 1 or args.sweep_runs < 1:
        ap.error("--runs and --sweep-runs must be >= 1")
    args.tools = B.split_list(args.tools, TOOLS, "tool", ap)
    if not args.tools:
        ap.error("--tools is empty")
    try:
        args.connections = [] if args.no_sweep else [
            int(x) for x in args.connections.split(",") if x.strip()]
    except ValueError:
        ap.error("--connections wants a comma list of numbers")
    if any(c < 1 for c in args.connections):
        ap.error("--connections values must be >= 1")
    B.PASSWORD_MODE = args.password_mode
    if args.lifeboat_bin and os.sep in args.lifeboat_bin:
        args.lifeboat_bin = os.path.abspath(args.lifeboat_bin)  # the tools run in scratch dirs
    args.datasets = []
    for d in args.dataset:
        name, sep, path = d.partition("=")
        if not sep or not os.path.isdir(path):
            ap.error("--dataset wants NAME=DIR with an existing DIR, got %r" % d)
        args.datasets.append((name, os.path.abspath(path)))
    gbin = garage_binary(args.garage_bin)
    if not os.access(gbin, os.X_OK):
        sys.exit("Garage not found (%s): `cargo install garage --version 2.5.0 --locked --root "
                 "~/.cache/lifeboat-tools/garage` (what .ci/run does) or set LIFEBOAT_GARAGE"
                 % gbin)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)  # the finally below stops Garage and cleans up

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    bench = S3Bench(args)
    bench.prepare_scratch()
    t_all = time.monotonic()
    garage = None
    try:
        os.makedirs(args.results_dir, exist_ok=True)
        h = bench.header()
        garage = Garage(gbin, os.path.join(bench.scratch, "s3-garage"))
        for k in ("zstd", "tar"):  # bench.py's floors; not used here
            h["versions"].pop(k, None)
        h["versions"]["garage"] = garage.version() + " (%s)" % gbin
        print(header_text(h), flush=True)
        garage.start()
        bench.garage = garage
        out_path = os.path.join(args.results_dir, "s3-%s.json"
                                % bench.stamp.strftime("%Y-%m-%d-%H%M%S"))
        out = {"kind": "s3", "header": h, "datasets": []}
        for name, path in args.datasets:
            t0 = time.monotonic()
            res = bench.run_dataset(name, path)
            res["elapsed_s"] = round(time.monotonic() - t0, 1)
            res["garage"] = {"binary": gbin, "version": garage.version(),
                             "peak_rss_kib": garage.peak_rss_kib(),
                             "compression_level": "none"}
            out["datasets"].append(res)
            with open(out_path, "w") as f:
                json.dump(out, f, indent=1)
            print(report(res), flush=True)
            print("_(dataset wall time %.0f s; raw results: `%s`)_\n"
                  % (res["elapsed_s"], os.path.relpath(out_path, args.repo_root)), flush=True)
            log("wrote %s" % out_path)
    finally:
        if garage is not None:
            garage.stop()
            try:
                os.makedirs(bench.logdir, exist_ok=True)
                shutil.copy(garage.log_path, os.path.join(bench.logdir, "garage-server.log"))
            except (OSError, AttributeError):
                pass
        for entry in os.listdir(bench.scratch):
            if entry != B.SCRATCH_MARK:
                bench.wipe(os.path.join(bench.scratch, entry))
        if os.listdir(bench.scratch) == [B.SCRATCH_MARK]:
            os.remove(os.path.join(bench.scratch, B.SCRATCH_MARK))
            os.rmdir(bench.scratch)
    log("all done in %.0f s" % (time.monotonic() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
