#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ (small, hand-built valid inputs; the first
byte of most targets picks a mode, see fuzz_targets/*.rs). Needs the zstd command for the
compressed seeds. Run from anywhere: python3 fuzz/make_seeds.py"""

import json
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


def pbytes(b):
    return varint(len(b)) + b


def pvec(items):
    return varint(len(items)) + b"".join(items)


def entry(version, kind, ident, offset, length, raw, compressed, frame_offset=0, frame_length=None):
    out = varint(kind) + bytes([ident]) * 32 + varint(offset) + varint(length) + varint(raw)
    out += b"\x01" if compressed else b"\x00"
    if version == 2:
        out += varint(frame_offset) + varint(raw if frame_length is None else frame_length)
    return out


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True).stdout


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    # pack_header
    v2_entries = pvec([
        entry(2, 0, 1, 8, 40, 10, False, 0, 24),
        entry(2, 0, 2, 8, 40, 14, False, 10, 24),
        entry(2, 1, 3, 48, 20, 4, True),
    ])
    v1_entries = pvec([entry(1, 0, 1, 8, 40, 24, False), entry(1, 1, 2, 48, 20, 4, True)])
    body = bytes(range(60))
    fake_pack = b"LBPK\x02\x00\x00\x00" + body + b"\x00" * 40 + struct.pack("<I", 40) + b"\x5a" * 32 + b"LBPT"
    write("pack_header", "raw-pack-v2", b"\x00" + fake_pack)
    write("pack_header", "sealed-header-v2", b"\x01\x02" + struct.pack("<H", len(body)) + body + v2_entries)
    write("pack_header", "sealed-header-v1", b"\x01\x01" + struct.pack("<H", len(body)) + body + v1_entries)
    write("pack_header", "decode-v1", b"\x02\x00" + v1_entries)
    write("pack_header", "decode-v2", b"\x02\x01" + v2_entries)
    frame = b"one small file\n" * 8
    write("pack_header", "frame-zstd", b"\x03\x00\x01" + struct.pack("<III", 15, 30, len(frame)) + zstd(frame))
    write("pack_header", "frame-raw", b"\x03\x01\x00" + struct.pack("<III", 0, 20, 20) + frame[:20])

    # index
    def index_plain(version, entries):
        pack = pbytes(b"ab" * 32) + b"\x11" * 32 + entries
        return varint(version) + pvec([pack, pbytes(b"cd" * 32) + b"\x22" * 32 + pvec([])])

    plain2 = index_plain(2, v2_entries)
    plain1 = index_plain(1, v1_entries)
    write("index", "sealed-v2", b"\x01" + struct.pack("<Q", len(plain2)) + zstd(plain2))
    write("index", "sealed-v1", b"\x01" + struct.pack("<Q", len(plain1)) + zstd(plain1))
    write("index", "compressed-v2", b"\x02" + plain2)
    write("index", "decode-v1", b"\x03" + plain1)
    write("index", "decode-v2", b"\x03" + plain2)
    write("index", "raw-object", b"\x00\x01" + b"\x5a" * 32 + b"\x00" * 40)

    # tree
    def node(name, kind, content=(), subtree=None, target=b"", xattrs=()):
        out = pbytes(name) + varint(kind) + varint(0o644) + varint(1000) + varint(1000)
        out += b"\x01" + pbytes(b"alice") + b"\x00"  # user, group
        out += zigzag(1700000000) + varint(123456789) + zigzag(1700000001) + varint(0)
        out += varint(2049) + varint(131) + varint(1) + varint(0) + varint(4096)
        out += pvec([bytes([c]) * 32 for c in content])
        out += (b"\x01" + bytes([subtree]) * 32) if subtree is not None else b"\x00"
        out += pbytes(target)
        out += pvec([pbytes(n) + pbytes(v) for n, v in xattrs])
        return out

    nodes = [
        node(b"a.txt", 0, content=(1, 2), xattrs=[(b"user.x", b"1")]),
        node(b"dir", 1, subtree=9),
        node(b"link", 2, target=b"../elsewhere"),
        node(b"\xff\xfe", 3),
    ]
    write("tree", "four-nodes", varint(1) + pvec(nodes))
    write("tree", "empty", varint(1) + pvec([]))
    write("tree", "one-file", varint(1) + pvec([node(b"f", 0, content=(7,))]))

    # snapshot
    snap = {
        "version": 1, "time": "2026-11-01T10:00:00+01:00", "hostname": "h", "username": "u",
        "paths": ["/srv/app"], "tags": ["daily"], "source": "files", "tree": list(range(32)),
        "parent": None, "previous": "ab" * 32, "program_version": "0.2.0",
        "summary": {k: 1 for k in ["files_new", "files_changed", "files_unmodified", "dirs",
                                     "total_files", "total_bytes", "bytes_read", "bytes_added",
                                     "bytes_added_packed", "blobs_added", "errors"]} | {"duration_seconds": 1.5},
    }
    write("snapshot", "sealed", b"\x01" + json.dumps(snap).encode())
    write("snapshot", "plain", b"\x02" + json.dumps(snap | {"original": "cd" * 32}).encode())
    write("snapshot", "raw-object", b"\x00\x01" + b"\x5a" * 32 + b"{}" + b"\x00" * 16)

    # lock
    lock = {"time": "2026-12-02T10:00:00Z", "exclusive": False, "maintenance": True,
            "hostname": "h", "username": "u", "pid": 4242, "operation": "prune", "holder": "ef" * 16}
    write("lock", "sealed", b"\x01" + json.dumps(lock).encode())
    old = dict(lock)
    del old["maintenance"], old["holder"]
    write("lock", "plain-old", b"\x02" + json.dumps(old).encode())
    write("lock", "raw-object", b"\x00\x01" + b"\x5a" * 32 + b"{}" + b"\x00" * 16)

    # key_file
    key = {"version": 1, "created": "2026-12-02T10:00:00Z", "hostname": "h", "username": "u",
           "kdf": {"algorithm": "argon2id", "memory_kib": 8, "iterations": 1, "parallelism": 1},
           "salt": "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=",
           "sealed_master": "AVpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWloAAAAAAAAAAAAAAAAAAAAA"}
    write("key_file", "argon2id", b"\x00" + json.dumps(key).encode())
    gen = key | {"kdf": {"algorithm": "generated-key", "memory_kib": 0, "iterations": 0, "parallelism": 0}}
    write("key_file", "generated", b"\x00" + json.dumps(gen).encode())
    master = {"repository_id": "0123456789abcdef0123456789abcdef", "seal": "11" * 32,
              "blob_id": "22" * 32, "chunker": "33" * 32}
    write("key_file", "master-argon2id", b"\x01" + json.dumps(master).encode())
    write("key_file", "master-generated", b"\x03" + json.dumps(master).encode())

    # config
    config = {"version": 2, "id": "0123456789abcdef0123456789abcdef",
              "created": "2026-12-02T10:00:00Z",
              "chunker": {"min_size": 524288, "avg_size": 1048576, "max_size": 8388608},
              "compression": "Auto", "pack_size": 16777216}
    write("config", "repository-v2", b"\x00" + json.dumps(config, indent=2).encode())
    write("config", "repository-v1-level", b"\x00" + json.dumps(config | {"version": 1, "compression": {"Level": 7}}).encode())
    write("config", "sources", b"\x01" + b'''
[sources.app]
kind = "files"
paths = ["/srv/app"]
exclude = ["*.log"]
tags = ["app"]

[sources.shop]
kind = "postgres"
env = { PGHOST = "/run/postgresql", PGUSER = "backup" }

[sources.shop-logical]
kind = "postgres"
logical = true
databases = ["shop"]

[sources.mongo]
kind = "command"
name = "mongo.archive"
command = ["mongodump", "--archive"]
host = "db1"

[sources.db]
kind = "sqlite"
database = "/var/lib/app/db.sqlite"

[sources.maria]
kind = "mysql"
databases = ["a", "b"]
''')

    # repo_url
    for i, spec in enumerate([
        "/srv/backup", "local:s3:odd-dir", "s3://bucket/a/b", "s3:http://127.0.0.1:3900/backups/host-a/",
        "s3:https://s3.example.com/b/p/q", "azure:container/prefix", "gs://bucket/p",
        "rest:https://backup.example.com:8000/repo/",
    ]):
        write("repo_url", f"url-{i}", spec)


if __name__ == "__main__":
    main()
