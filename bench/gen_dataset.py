#!/usr/bin/env python3
"""Deterministic generated datasets for the lifeboat benchmark (stdlib only).

    bench/gen_dataset.py OUT_DIR [--recipe tree|million|bigfile] [--scale tiny|small|full]
                         [--seed N] [--files N] [--dirs N] [--mib N] [--jobs 2] [--force]

Scale and seed default to $BENCH_GEN_SCALE (default "full") and
$BENCH_GEN_SEED (default 42).  The same recipe, parameters, seed and generator
version always yield byte-identical file contents, names and mtimes (also with
a different --jobs).

Recipe "tree" (default; the "generated" dataset), layout of OUT_DIR:

  small/...       many small files, 1-64 KiB, in nested directories
                  (about 4/7 text-like and compressible, 3/7 random)
  large/          a few large files: half text-like, half random
  dup/            duplicated content: copies of whole small/ subtrees,
                  single small files copied under new names, and a copy
                  of one large file

Recipe "million": --files small files (default $BENCH_MILLION_FILES or
1,000,000) of 1-8 KiB, text-like/random mixed as in "tree", spread evenly
over --dirs leaf directories (default: one per 500 files, i.e. 2,000),
two levels deep: dNN/eNN/fNNNNNNN.ext.

Recipe "bigfile": one file OUT_DIR/bigfile.bin of --mib MiB (default
$BENCH_BIGFILE_MIB or 4096): the first half text-like (zstd -3 shrinks it
~4x), the second half random.

A stamp file OUT_DIR + ".stamp" (outside the tree, so it is never part of a
backup) records what was generated; a matching stamp makes the run a no-op.
"""

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import time

GEN_VERSION = 2          # recipe "tree"
MILLION_VERSION = 1      # recipe "million"
BIGFILE_VERSION = 1      # recipe "bigfile"
MiB = 1 << 20
KiB = 1 << 10
FIXED_MTIME = 1_700_000_000  # all mtimes are fixed, so re-generation is identical

SCALES = {
    # small_files: count of 1-64 KiB files (avg ~32.5 KiB)
    # large_text / large_random: sizes in MiB
    # dup_subtrees: whole directories of small/ copied into dup/
    # dup_files: fraction of small files copied under another name
    # dup_large: copy the last (smallest) large text file into dup/
    "tiny": dict(small_files=300, large_text=[4], large_random=[4],
                 dup_subtrees=1, dup_files=0.05, dup_large=True),
    "small": dict(small_files=1200, large_text=[16], large_random=[12],
                  dup_subtrees=2, dup_files=0.05, dup_large=True),
    "full": dict(small_files=16000, large_text=[300, 100],
                 large_random=[200, 60],
                 dup_subtrees=2, dup_files=0.05, dup_large=True),
}

WORD_CHARS = "abcdefghijklmnopqrstuvwxyz"


def make_vocabulary(rng, n=4000):
    words = set()
    while len(words) < n:
        length = rng.choice([2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 11])
        words.add("".join(rng.choice(WORD_CHARS) for _ in range(length)))
    return sorted(words)


def make_lines(rng, vocab, n=20000):
    """A pool of text lines; text files are random sequences of these lines,
    which gives zstd -3 a ratio of roughly 3-4x but no long repeats that
    would make content-defined chunking dedup the text artificially."""
    lines = []
    for i in range(n):
        kind = rng.random()
        k = rng.randint(4, 16)
        words = rng.choices(vocab, k=k)
        if kind < 0.15:
            line = "    %s = %s(%s, %d);" % (words[0], words[1], ", ".join(words[2:5]),
                                             rng.randint(0, 99999))
        elif kind < 0.25:
            line = '{"%s": "%s", "id": %d, "v": %.4f}' % (words[0], " ".join(words[1:]),
                                                        rng.randint(0, 10**7), rng.random())
        else:
            line = " ".join(words).capitalize() + "."
        lines.append((line + "\n").encode())
    return lines


class Writer:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        vocab = make_vocabulary(self.rng)
        self.lines = make_lines(self.rng, vocab)
        self.files = 0
        self.bytes = 0

    def text_bytes(self, size):
        # average line ~60 bytes; over-draw then cut to the exact size
        out = []
        have = 0
        while have < size:
            need = max(16, (size - have) // 50 + 16)
            chunk = b"".join(self.rng.choices(self.lines, k=need))
            out.append(chunk)
            have += len(chunk)
        return b"".join(out)[:size]

    def random_bytes(self, size):
        return self.rng.randbytes(size)

    def write_file(self, path, kind, size, chunk=4 * MiB):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left > 0:
                n = min(chunk, left)
                f.write(self.text_bytes(n) if kind == "text" else self.random_bytes(n))
                left -= n
        self.files += 1
        self.bytes += size


def make_dir_tree(rng, count):
    """Nested directory paths (depth 1-5) under small/."""
    dirs = []
    top = max(4, int(count ** 0.5) // 4)
    for i in range(count):
        depth = rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5])
        parts = ["d%02d" % rng.randrange(top)]
        for _ in range(depth - 1):
            parts.append("%s%02d" % (rng.choice(["src", "lib", "doc", "img", "cfg", "tmp", "n"]),
                                     rng.randrange(6)))
        dirs.append(os.path.join("small", *parts))
    return sorted(set(dirs))


def fix_mtimes(root):
    """Set every mtime to a fixed value (files first, directories bottom-up)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (FIXED_MTIME, FIXED_MTIME),
                     follow_symlinks=False)
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))


def generate(out, scale, seed):
    cfg = SCALES[scale]
    w = Writer(seed)
    rng = w.rng
    os.makedirs(out)

    # small files
    n_small = cfg["small_files"]
    dirs = make_dir_tree(rng, max(8, n_small // 25))
    small_paths = []
    for i in range(n_small):
        d = rng.choice(dirs)
        ext = rng.choice([".txt", ".rs", ".json", ".md", ".bin", ".dat", ".log"])
        size = rng.randint(1 * KiB, 64 * KiB)
        kind = "random" if (ext in (".bin", ".dat") or rng.random() < 0.2) else "text"
        path = os.path.join(out, d, "f%05d%s" % (i, ext))
        w.write_file(path, kind, size)
        small_paths.append(path)

    # large files
    large_text = []
    for i, mib in enumerate(cfg["large_text"]):
        p = os.path.join(out, "large", "text%d.log" % i)
        w.write_file(p, "text", mib * MiB)
        large_text.append(p)
    for i, mib in enumerate(cfg["large_random"]):
        w.write_file(os.path.join(out, "large", "random%d.bin" % i), "random", mib * MiB)

    # duplicated content
    dup = os.path.join(out, "dup")
    os.makedirs(dup)
    top_dirs = sorted(os.listdir(os.path.join(out, "small")))
    for j, name in enumerate(rng.sample(top_dirs, min(cfg["dup_subtrees"], len(top_dirs)))):
        src = os.path.join(out, "small", name)
        dst = os.path.join(dup, "tree%d-%s" % (j, name))
        shutil.copytree(src, dst)
        for dp, _, fns in os.walk(dst):
            for fn in fns:
                w.files += 1
                w.bytes += os.path.getsize(os.path.join(dp, fn))
    n_dup = int(len(small_paths) * cfg["dup_files"])
    for j, src in enumerate(rng.sample(small_paths, n_dup)):
        dst = os.path.join(dup, "copies", "c%03d" % (j % 50), "copy%05d-%s" % (j, os.path.basename(src)))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        w.files += 1
        w.bytes += os.path.getsize(dst)
    if cfg["dup_large"] and large_text:
        dst = os.path.join(dup, "large-copy.log")
        shutil.copyfile(large_text[-1], dst)
        w.files += 1
        w.bytes += os.path.getsize(dst)

    fix_mtimes(out)
    return w.files, w.bytes


# --------------------------------------------------------------------------
# recipes "million" and "bigfile": many processes write, each part of the
# output has its own seed, so the result does not depend on --jobs.

_LINES = None  # the text line pool, built once in the parent and inherited by the workers
EXTS = [".txt", ".rs", ".json", ".md", ".bin", ".dat", ".log"]
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def line_pool(seed):
    rng = random.Random(seed)
    return make_lines(rng, make_vocabulary(rng))


def text_of(rng, size):
    out = []
    have = 0
    while have < size:
        chunk = b"".join(rng.choices(_LINES, k=max(16, (size - have) // 50 + 16)))
        out.append(chunk)
        have += len(chunk)
    return b"".join(out)[:size]


def million_dirs(n_dirs):
    """Leaf directories dNN/eNN: about sqrt(n_dirs) top-level directories."""
    top = max(1, int(round(n_dirs ** 0.5 * 1.25)))
    per = -(-n_dirs // top)
    return [os.path.join("d%03d" % (i // per), "e%03d" % (i % per)) for i in range(n_dirs)]


def million_dir_job(job):
    """Write the files of one leaf directory; returns (files, bytes)."""
    out, seed, d_index, rel, first, count = job
    rng = random.Random("%d-million-dir-%d" % (seed, d_index))
    path = os.path.join(out, rel)
    os.makedirs(path, exist_ok=True)
    nbytes = 0
    mt = FIXED_MTIME * 1_000_000_000
    for i in range(first, first + count):
        ext = rng.choice(EXTS)
        size = rng.randint(1 * KiB, 8 * KiB)
        random_kind = ext in (".bin", ".dat") or rng.random() < 0.2
        data = rng.randbytes(size) if random_kind else text_of(rng, size)
        fd = os.open(os.path.join(path, "f%07d%s" % (i, ext)), WRITE_FLAGS, 0o644)
        try:
            os.write(fd, data)
            os.utime(fd, ns=(mt, mt))
        finally:
            os.close(fd)
        nbytes += size
    os.utime(path, ns=(mt, mt))
    return count, nbytes


def generate_million(out, seed, n_files, n_dirs, jobs):
    global _LINES
    _LINES = line_pool("%d-million-lines" % seed)
    os.makedirs(out)
    dirs = million_dirs(n_dirs)
    base, extra = divmod(n_files, n_dirs)
    work = []
    first = 0
    for k, rel in enumerate(dirs):
        count = base + (1 if k < extra else 0)
        work.append((out, seed, k, rel, first, count))
        first += count
    files = nbytes = 0
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for f, b in pool.imap_unordered(million_dir_job, work, chunksize=4):
                files += f
                nbytes += b
    else:
        for job in work:
            f, b = million_dir_job(job)
            files += f
            nbytes += b
    fix_mtimes_dirs(out)
    return files, nbytes


def fix_mtimes_dirs(root):
    """Fixed mtime on every directory (bottom-up); files already have theirs."""
    for dirpath, _, _ in os.walk(root, topdown=False):
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))


BIG_CHUNK = 4 * MiB


def bigfile_chunk_job(job):
    path, seed, index, size, text = job
    rng = random.Random("%d-bigfile-chunk-%d" % (seed, index))
    data = text_of(rng, size) if text else rng.randbytes(size)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, data, index * BIG_CHUNK)
    finally:
        os.close(fd)
    return size


def generate_bigfile(out, seed, mib, jobs):
    global _LINES
    _LINES = line_pool("%d-bigfile-lines" % seed)
    os.makedirs(out)
    path = os.path.join(out, "bigfile.bin")
    total = mib * MiB
    half = total // 2
    fd = os.open(path, WRITE_FLAGS, 0o644)
    os.ftruncate(fd, total)
    os.close(fd)
    work = []
    for index in range(-(-total // BIG_CHUNK)):
        start = index * BIG_CHUNK
        size = min(BIG_CHUNK, total - start)
        # a chunk is text if it starts in the first half (the half is chunk aligned
        # for any whole number of MiB >= 8; smaller files round to a chunk)
        work.append((path, seed, index, size, start < half))
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for _ in pool.imap_unordered(bigfile_chunk_job, work):
                pass
    else:
        for job in work:
            bigfile_chunk_job(job)
    os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    os.utime(out, (FIXED_MTIME, FIXED_MTIME))
    return 1, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--recipe", default="tree", choices=["tree", "million", "bigfile"])
    ap.add_argument("--scale", default=os.environ.get("BENCH_GEN_SCALE", "full"),
                    choices=sorted(SCALES), help="recipe tree: its size")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_GEN_SEED", "42")))
    ap.add_argument("--files", type=int, default=int(os.environ.get("BENCH_MILLION_FILES",
                                                                    "1000000")),
                    help="recipe million: number of files (default 1,000,000)")
    ap.add_argument("--dirs", type=int, default=0,
                    help="recipe million: number of leaf directories (default files/500)")
    ap.add_argument("--mib", type=int, default=int(os.environ.get("BENCH_BIGFILE_MIB", "4096")),
                    help="recipe bigfile: size in MiB (default 4096)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="writer processes for million and bigfile (default 2)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the stamp matches")
    args = ap.parse_args()

    out = os.path.abspath(args.out.rstrip("/"))
    stamp_path = out + ".stamp"
    if args.recipe == "tree":
        # no "recipe" key: stamps written before the other recipes existed still match
        want = {"version": GEN_VERSION, "scale": args.scale, "seed": args.seed}
    elif args.recipe == "million":
        if args.files < 1:
            ap.error("--files must be >= 1")
        dirs = args.dirs or max(1, round(args.files / 500))
        want = {"recipe": "million", "version": MILLION_VERSION, "n_files": args.files,
                "n_dirs": min(dirs, args.files), "seed": args.seed}
    else:
        if args.mib < 1:
            ap.error("--mib must be >= 1")
        want = {"recipe": "bigfile", "version": BIGFILE_VERSION, "mib": args.mib,
                "seed": args.seed}
    if not args.force and os.path.isdir(out) and os.path.exists(stamp_path):
        try:
            with open(stamp_path) as f:
                have = json.load(f)
            if all(have.get(k) == v for k, v in want.items()):
                print("dataset %s already generated (%d files, %.1f MiB)"
                      % (out, have["files"], have["bytes"] / MiB), file=sys.stderr)
                return 0
        except (OSError, ValueError, KeyError):
            pass

    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    if os.path.exists(out):
        shutil.rmtree(out)
    t0 = time.monotonic()
    jobs = max(1, args.jobs)
    if args.recipe == "tree":
        files, nbytes = generate(out, args.scale, args.seed)
        what = "scale=%s seed=%d" % (args.scale, args.seed)
    elif args.recipe == "million":
        files, nbytes = generate_million(out, args.seed, want["n_files"], want["n_dirs"], jobs)
        what = "million: %d files in %d dirs, seed=%d" % (want["n_files"], want["n_dirs"],
                                                          args.seed)
    else:
        files, nbytes = generate_bigfile(out, args.seed, args.mib, jobs)
        what = "bigfile: %d MiB, seed=%d" % (args.mib, args.seed)
    want.update(files=files, bytes=nbytes, seconds=round(time.monotonic() - t0, 1))
    with open(stamp_path, "w") as f:
        json.dump(want, f)
    print("generated %s: %s, %d files, %.1f MiB in %.1fs"
          % (out, what, files, nbytes / MiB, want["seconds"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
