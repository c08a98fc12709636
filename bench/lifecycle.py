#!/usr/bin/env python3
"""Lifecycle benchmark: prune and check --read-data, lifeboat against restic
(stdlib only; the helpers come from bench.py).

Normally started by `bench/run.sh --lifecycle`, which installs restic, builds
lifeboat if needed and prepares the dataset first.  Direct use:

    bench/lifecycle.py --dataset NAME=DIR [--snapshots 50] [--keep-last 10] [--runs 3]
                       [--scratch /tmp/lifeboat-bench] [--results-dir bench/results]
                       [--lifeboat-bin PATH] [--password-mode] [--timeout 3600] [--keep]
    bench/lifecycle.py --report RESULTS.json [...]

1. History (untimed): one repository per tool; --snapshots backups of DIR.
   Before backup i (i >= 2) the harness's 1% mutation (bench.Mutation, seed
   SEED+i-1) is applied, both tools back up that same tree, and the mutation
   is undone, so snapshot i is the base tree plus mutation i, in both tools.
2. Forget (untimed): `forget --keep-last K` in both tools (default K =
   snapshots/5: the newest 10 of 50 stay).  Then a dry run of each tool's
   prune on a throwaway copy, for the report (what would be deleted/repacked).
3. Per run (--runs): the tool's whole history directory (repository, key,
   cache: the state the machine that made the backups has) is copied with
   `cp -a` (untimed) and, on the copy, `prune` is timed, then
   `check --read-data` on the pruned copy.  Every run starts from the same
   repository.  Wall time and peak RSS as in bench.py (run_cmd).

DIR must be a tree bench made (it has DIR.stamp: the generated datasets or the
rustup copy), because it is changed and restored between backups.  The page
cache stays warm: the copy of the repository was just written.

Markdown goes to stdout, progress to stderr, raw results to
RESULTS_DIR/lifecycle-<dataset>-<date>.json.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import bench as B

PHASES = ["prune", "check"]
PHASE_LABEL = {"prune": "prune", "check": "check --read-data"}
# issue 5: prune <= 0.5x restic's wall time, check --read-data <= 0.7x, peak RSS <= restic's
TARGETS = {"prune": 0.5, "check": 0.7}
RSS_TARGET = 1.0
TOOLS = ["lifeboat", "restic"]


def prune_cmd(tool, ctx, dry_run=False):
    if tool.name == "lifeboat":
        cmd = [tool.binary, "--repo", ctx.repo, "prune"]
        return cmd + (["--dry-run", "--json"] if dry_run else ["--quiet"])
    return [tool.binary, "prune"] + (["--dry-run"] if dry_run else [])


def check_cmd(tool, ctx):
    if tool.name == "lifeboat":
        return [tool.binary, "--repo", ctx.repo, "check", "--read-data", "--quiet"]
    return [tool.binary, "check", "--read-data"]


def forget_cmd(tool, ctx, keep):
    if tool.name == "lifeboat":
        return [tool.binary, "--repo", ctx.repo, "forget", "--keep-last", str(keep)]
    return [tool.binary, "forget", "--keep-last", str(keep)]


def snapshots_cmd(tool, ctx):
    if tool.name == "lifeboat":
        return [tool.binary, "--repo", ctx.repo, "--json", "snapshots"]
    return [tool.binary, "snapshots", "--json"]


def count_snapshots(text):
    """Snapshots in the output of `snapshots --json`: a JSON list (restic),
    or JSON lines / an object with a list (lifeboat)."""
    text = text.strip()
    try:
        v = json.loads(text)
        if isinstance(v, list):
            return len(v)
        if isinstance(v, dict):
            for k in ("snapshots", "items"):
                if isinstance(v.get(k), list):
                    return len(v[k])
    except ValueError:
        lines = [ln for ln in text.splitlines() if ln.strip().startswith("{")]
        if lines:
            return len(lines)
    return None


def files_under(path):
    n = 0
    for _, _, names in os.walk(path):
        n += len(names)
    return n


def repo_shape(tool, repo):
    """A few counts of the repository's files (packs, index files, ...)."""
    out = {"bytes": B.du_bytes(repo)}
    if not os.path.isdir(repo):
        return out
    for entry in sorted(os.listdir(repo)):
        p = os.path.join(repo, entry)
        if os.path.isdir(p):
            out["files_" + entry] = files_under(p)
    return out


class Lifecycle(B.Bench):

    def cmd_out(self, cmd, env, cwd, logbase):
        """An untimed command; returns run_cmd's result plus its stdout text."""
        r = B.run_cmd(cmd, env=env, cwd=cwd, out_path=logbase + ".out",
                      err_path=logbase + ".err", timeout=self.args.timeout)
        r["log"] = logbase
        with open(logbase + ".out", "rb") as f:
            r["stdout"] = f.read().decode("utf-8", "replace")
        return r

    def copy_base(self, src, dst):
        self.wipe(dst)
        t0 = time.monotonic()
        if subprocess.run(["cp", "-a", src, dst]).returncode != 0:
            raise RuntimeError("cp -a %s %s failed" % (src, dst))
        return time.monotonic() - t0

    def run_dataset(self, dsname, data):
        a = self.args
        data = os.path.abspath(data)
        st = B.read_stamp(data)
        label = B.dataset_label(dsname, st)
        log = B.log
        log("lifecycle on %s: %s" % (label, data))
        ok, why = B.may_mutate(data)
        if not ok:
            sys.exit("the lifecycle benchmark changes the tree between backups: " + why)
        B.Mutation.recover(data)
        t0 = time.monotonic()
        (nfiles, nbytes), _, files = B.scan_tree(data, True)
        log("scanned %d files in %.1fs" % (nfiles, time.monotonic() - t0))
        ds = {"name": dsname, "label": label, "path": data, "files": nfiles,
              "file_bytes": nbytes, "du_bytes": B.du_bytes(data), "stamp": st,
              "snapshots": a.snapshots, "keep_last": a.keep_last, "seed": a.seed,
              "mutations": []}
        base = os.path.join(self.scratch, "lifecycle-" + dsname)
        logdir = os.path.join(self.logdir, "lifecycle-" + dsname)
        os.makedirs(logdir, exist_ok=True)
        tools = [self.tools[n] for n in a.tools]
        res = {t.name: {"status": "ok", "history": [], "runs": []} for t in tools}
        for t in tools:
            if not t.binary:
                res[t.name].update(status="n/a", reason="binary not found")
                log("%s: not installed, shown as n/a" % t.name)
        live = [t for t in tools if res[t.name]["status"] == "ok"]

        def fail(t, what, r):
            msg = "%s: exit %s%s" % (what, r["rc"], " (timeout)" if r.get("timed_out") else "")
            tl = B.tail(r["log"] + ".err") or B.tail(r["log"] + ".out")
            log("%s %s FAILED; stderr tail:\n%s" % (t.name, msg, tl))
            res[t.name].update(status="fail", error=msg, error_tail=tl)
            live.remove(t)

        # ---- 1. history
        hist = {}
        for t in list(live):
            ctx = B.Ctx(os.path.join(base, t.name + "-history"), data)
            self.wipe(ctx.base)
            ctx.make()
            hist[t.name] = ctx
            env = ctx.env(t.env(ctx))
            for i, cmd in enumerate(t.init_cmds(ctx)):
                r = self.cmd_out(cmd, env, ctx.base, os.path.join(logdir, "%s-init%d" % (t.name, i)))
                if r["rc"] != 0:
                    fail(t, "init", r)
                    break
        self.warm(data)
        t_hist = time.monotonic()
        for step in range(1, a.snapshots + 1):
            if not live:
                break
            mut = None
            if step > 1:
                mut = B.Mutation.plan(data, files, a.seed + step - 1)
                ds["mutations"].append(mut.summary())
                mut.apply()
            try:
                for t in list(live):
                    ctx = hist[t.name]
                    r = self.timed(t.backup_cmd(ctx, step), ctx.env(t.env(ctx)), ctx.base,
                                   os.path.join(logdir, "%s-backup%02d" % (t.name, step)))
                    res[t.name]["history"].append(
                        {k: r[k] for k in ("rc", "seconds", "peak_kib", "timed_out")})
                    if r["rc"] != 0:
                        fail(t, "backup %d" % step, r)
            finally:
                if mut:
                    mut.undo()
            log("snapshot %d/%d: %s" % (step, a.snapshots, ", ".join(
                "%s %.1fs" % (t.name, res[t.name]["history"][-1]["seconds"]) for t in live)))
        ds["history_s"] = round(time.monotonic() - t_hist, 1)
        del files

        # ---- 2. forget, sizes, dry runs
        for t in list(live):
            ctx = hist[t.name]
            env = ctx.env(t.env(ctx))
            rt = res[t.name]
            r = self.cmd_out(snapshots_cmd(t, ctx), env, ctx.base,
                             os.path.join(logdir, "%s-snapshots-before" % t.name))
            rt["snapshots_before"] = count_snapshots(r["stdout"]) if r["rc"] == 0 else None
            rt["repo_before_forget"] = repo_shape(t, ctx.repo)
            r = self.cmd_out(forget_cmd(t, ctx, a.keep_last), env, ctx.base,
                             os.path.join(logdir, "%s-forget" % t.name))
            if r["rc"] != 0:
                fail(t, "forget", r)
                continue
            r = self.cmd_out(snapshots_cmd(t, ctx), env, ctx.base,
                             os.path.join(logdir, "%s-snapshots-after" % t.name))
            rt["snapshots_after"] = count_snapshots(r["stdout"]) if r["rc"] == 0 else None
            rt["repo_before_prune"] = repo_shape(t, ctx.repo)
            log("%s: %s snapshots, forget --keep-last %d -> %s; repository %.0f MiB"
                % (t.name, rt["snapshots_before"], a.keep_last, rt["snapshots_after"],
                   rt["repo_before_prune"]["bytes"] / B.MiB))
            # what prune would do, on a throwaway copy (the history stays untouched)
            dry = B.Ctx(os.path.join(base, t.name + "-dryrun"), data)
            self.copy_base(ctx.base, dry.base)
            r = self.cmd_out(prune_cmd(t, dry, dry_run=True), dry.env(t.env(dry)), dry.base,
                             os.path.join(logdir, "%s-prune-dry-run" % t.name))
            rt["dry_run"] = {"rc": r["rc"], "output": r["stdout"][-6000:],
                             "stderr": B.tail(r["log"] + ".err", 40)}
            self.wipe(dry.base)

        # ---- 3. timed prune and check --read-data, each run on a fresh copy
        for run in range(1, a.runs + 1):
            for t in list(live):
                ctx = B.Ctx(os.path.join(base, "%s-run%d" % (t.name, run)), data)
                copy_s = self.copy_base(hist[t.name].base, ctx.base)
                env = ctx.env(t.env(ctx))
                one = {"run": run, "copy_s": round(copy_s, 1)}
                res[t.name]["runs"].append(one)
                try:
                    logpre = os.path.join(logdir, "%s-run%d" % (t.name, run))
                    r = self.timed(prune_cmd(t, ctx), env, ctx.base, logpre + "-prune")
                    one["prune"] = r
                    if r["rc"] != 0:
                        fail(t, "prune (run %d)" % run, r)
                        continue
                    one["repo_after_prune"] = repo_shape(t, ctx.repo)
                    log("%s run %d prune: %.2fs, %.0f MiB RSS; repository %.0f -> %.0f MiB"
                        % (t.name, run, r["seconds"], r["peak_kib"] / 1024,
                           res[t.name]["repo_before_prune"]["bytes"] / B.MiB,
                           one["repo_after_prune"]["bytes"] / B.MiB))
                    r = self.timed(check_cmd(t, ctx), env, ctx.base, logpre + "-check")
                    one["check"] = r
                    if r["rc"] != 0:
                        fail(t, "check --read-data (run %d)" % run, r)
                        continue
                    log("%s run %d check --read-data: %.2fs, %.0f MiB RSS"
                        % (t.name, run, r["seconds"], r["peak_kib"] / 1024))
                    if run == 1:
                        # untimed: what a plain check says of the pruned repository
                        # (lifeboat notes packs still waiting for deletion)
                        r = self.cmd_out(check_cmd(t, ctx)[:-2] if t.name == "lifeboat"
                                         else [t.binary, "check"], env, ctx.base,
                                         logpre + "-check-plain")
                        res[t.name]["check_plain"] = {
                            "rc": r["rc"], "output": r["stdout"][-3000:],
                            "stderr": B.tail(r["log"] + ".err", 20)}
                finally:
                    self.wipe(ctx.base)
        if not a.keep:
            for ctx in hist.values():
                self.wipe(ctx.base)
        else:
            log("kept the history repositories: %s" % ", ".join(c.base for c in hist.values()))
        return {"kind": "lifecycle", "dataset": ds, "tools": res,
                "summary": summarize(res)}


def summarize(res):
    s = {}
    for name, rt in res.items():
        d = {"status": rt["status"]}
        for ph in PHASES:
            ok = [r[ph] for r in rt["runs"] if ph in r and r[ph]["rc"] == 0]
            if ok:
                d[ph + "_s"] = statistics.median(x["seconds"] for x in ok)
                d[ph + "_spread"] = B.spread([x["seconds"] for x in ok])
                d[ph + "_rss_mib"] = max(x["peak_kib"] for x in ok) / 1024
        bk = [h for h in rt["history"][1:] if h["rc"] == 0]
        if bk:
            d["backup_s"] = statistics.median(h["seconds"] for h in bk)
            d["backup_rss_mib"] = max(h["peak_kib"] for h in bk) / 1024
        if rt.get("repo_before_prune"):
            d["before_mib"] = rt["repo_before_prune"]["bytes"] / B.MiB
        after = [r["repo_after_prune"]["bytes"] for r in rt["runs"] if "repo_after_prune" in r]
        if after:
            d["after_mib"] = statistics.median(after) / B.MiB
        if "error" in rt:
            d["error"] = rt["error"]
        s[name] = d
    return s


def md(text):
    return B.md_cell(text)


def prune_plan(tool, dry):
    """One line of what the tool's prune --dry-run said it would do."""
    if not dry or dry.get("rc") != 0:
        return None
    out = dry.get("output", "")
    if tool == "lifeboat":
        try:
            j = json.loads([ln for ln in out.splitlines() if ln.strip().startswith("{")][-1])
        except (ValueError, IndexError):
            return None
        text = ("delete %d packs, repack %d (copy %.1f MiB), keep %d; frees %.1f MiB; "
                "%.1f MiB unused kept" % (j.get("packs_to_delete", 0), j.get("packs_to_repack", 0),
                                          j.get("bytes_to_copy", 0) / B.MiB,
                                          j.get("packs_kept", 0),
                                          j.get("bytes_to_free", 0) / B.MiB,
                                          j.get("unused_bytes_kept", 0) / B.MiB))
        if j.get("packs_waiting"):
            text += "; %d packs waiting" % j["packs_waiting"]
        return text
    got = dict(re.findall(r"(?m)^(to repack|this removes|to delete|total prune|"
                          r"unused size after prune):\s+(.*?)\s*$", out))
    if not got:
        return None
    return "; ".join("%s %s" % (k, got[k]) for k in ("to repack", "this removes", "to delete",
                                                      "total prune", "unused size after prune")
                     if k in got)


def report(res):
    ds = res["dataset"]
    s = res["summary"]
    lb, rs = s.get("lifeboat", {}), s.get("restic", {})
    L = []
    L.append("### Lifecycle on `%s`" % ds["label"])
    L.append("")
    L.append("`%s`: %d regular files, %.0f MiB of file data. History: %d snapshots; before "
             "snapshot i ≥ 2 the 1%% mutation with seed %d+i−1 is applied and undone after "
             "both tools backed it up (each step changes about %d files). Then "
             "`forget --keep-last %d` in both tools, so %d snapshots are forgotten."
             % (ds["path"], ds["files"], ds["file_bytes"] / B.MiB, ds["snapshots"], ds["seed"],
                sum(ds["mutations"][0][k] for k in ("appended", "rewritten", "deleted", "new"))
                if ds["mutations"] else 0, ds["keep_last"], ds["snapshots"] - ds["keep_last"]))
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

    L.append("| phase | lifeboat, s | restic, s | lifeboat ÷ restic | target | met? "
             "| lifeboat peak RSS, MiB | restic peak RSS, MiB | RSS ratio | RSS ≤ restic? |")
    L.append("|---|---:|---:|---:|---|---|---:|---:|---:|---|")
    for ph in PHASES:
        r = B.ratio(lb.get(ph + "_s"), rs.get(ph + "_s"))
        rr = B.ratio(lb.get(ph + "_rss_mib"), rs.get(ph + "_rss_mib"))
        L.append("| %s | %s | %s | %s | ≤%g× restic | %s | %s | %s | %s | %s |" % (
            PHASE_LABEL[ph], cell(lb, ph + "_s", B.fmt_s), cell(rs, ph + "_s", B.fmt_s),
            B.fmt_ratio(r), TARGETS[ph], B.verdict("and", [(r, TARGETS[ph], False)]),
            cell(lb, ph + "_rss_mib", B.fmt_mib), cell(rs, ph + "_rss_mib", B.fmt_mib),
            B.fmt_ratio(rr), B.verdict("and", [(rr, RSS_TARGET, False)])))
    L.append("")
    L.append("| repository | lifeboat | restic | lifeboat ÷ restic |")
    L.append("|---|---:|---:|---:|")
    rt = res["tools"]

    def snaps(t, k):
        v = rt.get(t, {}).get(k)
        return "—" if v is None else str(v)

    L.append("| snapshots before / after forget | %s / %s | %s / %s | — |"
             % (snaps("lifeboat", "snapshots_before"), snaps("lifeboat", "snapshots_after"),
                snaps("restic", "snapshots_before"), snaps("restic", "snapshots_after")))
    for key, what in (("before_mib", "size before prune (after forget), MiB"),
                      ("after_mib", "size after prune, MiB")):
        L.append("| %s | %s | %s | %s |" % (what, cell(lb, key, B.fmt_mib),
                                            cell(rs, key, B.fmt_mib),
                                            B.fmt_ratio(B.ratio(lb.get(key), rs.get(key)))))
    fr = {}
    for t, d in (("lifeboat", lb), ("restic", rs)):
        if "before_mib" in d and "after_mib" in d:
            fr[t] = d["before_mib"] - d["after_mib"]
    L.append("| freed by prune, MiB | %s | %s | — |"
             % (B.fmt_mib(fr.get("lifeboat")), B.fmt_mib(fr.get("restic"))))
    L.append("| backup of a changed tree (history, for information), median s / max RSS MiB "
             "| %s / %s | %s / %s | %s |"
             % (cell(lb, "backup_s", B.fmt_s), cell(lb, "backup_rss_mib", B.fmt_mib),
                cell(rs, "backup_s", B.fmt_s), cell(rs, "backup_rss_mib", B.fmt_mib),
                B.fmt_ratio(B.ratio(lb.get("backup_s"), rs.get("backup_s")))))
    plan = {t: prune_plan(t, rt[t].get("dry_run")) for t in TOOLS if t in rt}
    if any(plan.values()):
        L.append("| prune plan (`prune --dry-run` on a copy) | %s | %s | — |"
                 % (md(plan.get("lifeboat") or "—"), md(plan.get("restic") or "—")))
    L.append("")
    notes = []
    for t in TOOLS:
        d = s.get(t)
        if not d:
            continue
        if d["status"] == "n/a":
            notes.append("%s: n/a (%s)" % (t, rt[t].get("reason", "")))
        elif "error" in d:
            notes.append("%s: failed at %s" % (t, d["error"]))
    w = [r.get("repo_after_prune", {}).get("files_condemned")
         for r in rt.get("lifeboat", {}).get("runs", [])]
    w = [x for x in w if x]
    if w:
        notes.append("lifeboat: %s files left in `condemned/` after prune" % "/".join(map(str, w)))
    if notes:
        L.append("Notes: " + "; ".join(notes) + ".")
        L.append("")
    return "\n".join(L)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="lifeboat lifecycle benchmark (prune, check)")
    ap.add_argument("--dataset", "--datasets", action="append", metavar="NAME=DIR")
    ap.add_argument("--report", nargs="+", metavar="JSON")
    ap.add_argument("--snapshots", type=int, default=50)
    ap.add_argument("--keep-last", type=int, default=None,
                    help="snapshots kept by forget (default: snapshots/5, at least 1)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="lifeboat,restic")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_GEN_SEED", "42")))
    ap.add_argument("--scratch", default=os.environ.get("BENCH_SCRATCH", "/tmp/lifeboat-bench"))
    ap.add_argument("--results-dir", default=os.path.join(here, "results"))
    ap.add_argument("--repo-root", default=os.path.dirname(here))
    ap.add_argument("--lifeboat-bin", default=os.environ.get(
        "LIFEBOAT_BIN", os.path.join(os.path.dirname(here), "target", "release", "lifeboat")))
    ap.add_argument("--password-mode", action="store_true")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", 3600)))
    ap.add_argument("--keep", action="store_true",
                    help="keep the history repositories in the scratch dir (for profiling)")
    ap.add_argument("--no-floors", action="store_true", help=argparse.SUPPRESS)  # run.sh passes it
    args = ap.parse_args()
    if args.report:
        for i, path in enumerate(args.report):
            with open(path) as f:
                res = json.load(f)
            res["summary"] = summarize(res["tools"])
            if i == 0:
                print(B.report_header(res["header"]))
            print(report(res))
            print("_(raw results: `%s`)_\n" % os.path.relpath(path, args.repo_root))
        return 0
    if not args.dataset:
        ap.error("--dataset NAME=DIR is required (or --report JSON...)")
    if args.snapshots < 2:
        ap.error("--snapshots must be >= 2")
    if args.keep_last is None:
        args.keep_last = max(1, args.snapshots // 5)
    if not 1 <= args.keep_last < args.snapshots:
        ap.error("--keep-last must be between 1 and --snapshots - 1")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    args.tools = B.split_list(args.tools, TOOLS, "tool", ap)
    B.PASSWORD_MODE = args.password_mode
    args.datasets = []
    for d in args.dataset:
        name, sep, path = d.partition("=")
        if not sep or not os.path.isdir(path):
            ap.error("--dataset wants NAME=DIR with an existing DIR, got %r" % d)
        args.datasets.append((name, os.path.abspath(path)))

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    bench = Lifecycle(args)
    bench.prepare_scratch()
    t_all = time.monotonic()
    try:
        os.makedirs(args.results_dir, exist_ok=True)
        h = bench.header()
        print(B.report_header(h).replace("fresh repository each run",
                                         "every run on a fresh copy of the same history"),
              flush=True)
        for name, path in args.datasets:
            t0 = time.monotonic()
            res = bench.run_dataset(name, path)
            res["header"] = h
            res["elapsed_s"] = round(time.monotonic() - t0, 1)
            out = os.path.join(args.results_dir, "lifecycle-%s-%s.json"
                               % (name, bench.stamp.strftime("%Y-%m-%d-%H%M%S")))
            with open(out, "w") as f:
                json.dump(res, f, indent=1)
            print(report(res), flush=True)
            print("_(wall time %.0f s, of it %.0f s for the history; raw results: `%s`)_\n"
                  % (res["elapsed_s"], res["dataset"]["history_s"],
                     os.path.relpath(out, args.repo_root)), flush=True)
            B.log("wrote %s" % out)
    finally:
        if not args.keep:
            for entry in os.listdir(bench.scratch):
                if entry != B.SCRATCH_MARK:
                    bench.wipe(os.path.join(bench.scratch, entry))
            if os.listdir(bench.scratch) == [B.SCRATCH_MARK]:
                os.remove(os.path.join(bench.scratch, B.SCRATCH_MARK))
                os.rmdir(bench.scratch)
    B.log("all done in %.0f s" % (time.monotonic() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
