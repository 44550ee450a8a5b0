#!/usr/bin/env python3
"""The workloads of scripts/bench, run side by side on several folders in one run.

Each repetition runs every workload on every target, in an order that rotates from one
repetition to the next, so drift on a shared machine falls on all targets alike. A target's
figure is the median over repetitions of its time divided by the native folder's time in the
same repetition (a paired ratio). Times are wall-clock seconds; nothing here asserts a time.

    bench.py --reps 5 --files 5000 --out results.json native=/x/native sipfs=/x/mnt ...
"""

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import time
import zipfile

BLOCK = os.urandom(4096)


def tree(root, files, per_dir=100):
    """`files` files of 4 KiB in folders of `per_dir`."""
    for i in range(files):
        d = os.path.join(root, f"d{i // per_dir:04d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
            f.write(BLOCK)


def all_files(root):
    for d, _, names in os.walk(root):
        for n in names:
            yield os.path.join(d, n)


def w_create(root, n):
    tree(os.path.join(root, "t"), n)


def w_stat(root, n):
    for p in all_files(os.path.join(root, "t")):
        os.stat(p)


def w_list(root, n):
    count = 0
    stack = [os.path.join(root, "t")]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                count += 1
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    assert count >= n


def w_read(root, n):
    for p in all_files(os.path.join(root, "t")):
        with open(p, "rb") as f:
            f.read()


def w_delete(root, n):
    shutil.rmtree(os.path.join(root, "t"))


def sqlite_inserts(root, mode):
    path = os.path.join(root, f"bench-{mode}.sqlite")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA journal_mode={mode}")
    db.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, step TEXT, value REAL)")
    for tx in range(100):
        with db:
            db.executemany(
                "INSERT INTO r(step, value) VALUES(?, ?)",
                ((f"step-{tx}", i * 0.5) for i in range(100)),
            )
    db.close()


def w_sqlite_wal(root, n):
    sqlite_inserts(root, "wal")


def w_sqlite_rollback(root, n):
    sqlite_inserts(root, "delete")


def w_copytree(root, n):
    dst = os.path.join(root, "copy")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(os.path.join(root, "src2000"), dst)


def w_zip(root, n):
    out = os.path.join(root, "snapshot.zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for p in all_files(os.path.join(root, "src2000")):
            z.write(p, os.path.relpath(p, root))


SEQ = 256 << 20


def w_seq_write(root, n):
    chunk = os.urandom(1 << 20)
    with open(os.path.join(root, "big.dat"), "wb") as f:
        for _ in range(SEQ >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def w_seq_read(root, n):
    with open(os.path.join(root, "big.dat"), "rb") as f:
        while f.read(1 << 20):
            pass


def w_random(root, n):
    rnd = random.Random(7)
    with open(os.path.join(root, "rand.dat"), "r+b") as f:
        for _ in range(4000):
            off = rnd.randrange(0, (64 << 20) // 4096) * 4096
            f.seek(off)
            if rnd.random() < 0.5:
                f.read(4096)
            else:
                f.write(BLOCK)


def prep_nothing(root, n):
    pass


def prep_tree(root, n):
    if not os.path.exists(os.path.join(root, "t")):
        tree(os.path.join(root, "t"), n)


def prep_clean_tree(root, n):
    if os.path.exists(os.path.join(root, "t")):
        shutil.rmtree(os.path.join(root, "t"))


def prep_src2000(root, n):
    if not os.path.exists(os.path.join(root, "src2000")):
        tree(os.path.join(root, "src2000"), 2000)


def prep_rand(root, n):
    p = os.path.join(root, "rand.dat")
    if not os.path.exists(p) or os.path.getsize(p) != 64 << 20:
        with open(p, "wb") as f:
            f.truncate(64 << 20)


# (name, preparation, workload). Order matters: create leaves the tree the next ones use.
WORKLOADS = [
    ("create", prep_clean_tree, w_create),
    ("stat all", prep_tree, w_stat),
    ("list all", prep_tree, w_list),
    ("read each small file once", prep_tree, w_read),
    ("delete all", prep_tree, w_delete),
    ("SQLite 10 000 inserts in 100 tx (WAL)", prep_nothing, w_sqlite_wal),
    ("SQLite 10 000 inserts in 100 tx (rollback journal)", prep_nothing, w_sqlite_rollback),
    ("shutil.copytree of 2000 files", prep_src2000, w_copytree),
    ("zip of 2000 files", prep_src2000, w_zip),
    ("sequential 256 MiB write+fsync", prep_nothing, w_seq_write),
    ("sequential 256 MiB read", prep_nothing, w_seq_read),
    ("random 4 KiB read/write", prep_rand, w_random),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated workload names (substring)")
    ap.add_argument("--floor", default="", help="the target sipfs is also compared with")
    ap.add_argument("targets", nargs="+", help="NAME=FOLDER; the first is the baseline")
    a = ap.parse_args()
    targets = [t.split("=", 1) for t in a.targets]
    chosen = [w for w in WORKLOADS if not a.only or any(o in w[0] for o in a.only.split(","))]
    times = {w[0]: {t[0]: [] for t in targets} for w in chosen}
    errors = {}
    for rep in range(a.reps):
        order = targets[rep % len(targets):] + targets[: rep % len(targets)]
        for name, prep, work in chosen:
            for tname, root in order:
                if (name, tname) in errors:
                    continue
                try:
                    prep(root, a.files)
                    os.sync()
                    t0 = time.perf_counter()
                    work(root, a.files)
                    times[name][tname].append(time.perf_counter() - t0)
                except shutil.Error as e:
                    failed = e.args[0] if e.args and isinstance(e.args[0], list) else []
                    first = failed[0][2] if failed else str(e)
                    errors[(name, tname)] = f"{len(failed)} files, first: {first.split(':')[0]}"
                except OSError as e:
                    errors[(name, tname)] = e.strerror or str(e)[:60]
            print(f"rep {rep + 1}/{a.reps}: {name} done", flush=True)
    base = targets[0][0]
    result = {"reps": a.reps, "files": a.files, "targets": [t[0] for t in targets], "rows": []}
    for name, _, _ in chosen:
        # Each repetition's seconds too, so that other pairings can be computed afterwards.
        row = {"workload": name, "seconds": {}, "ratio": {}, "times": times[name]}
        for tname, _ in targets:
            ts = times[name][tname]
            if (name, tname) in errors:
                row["ratio"][tname] = "fails (" + errors[(name, tname)] + ")"
                continue
            row["seconds"][tname] = statistics.median(ts)
            bs = times[name][base]
            pairs = [t / b for t, b in zip(ts, bs) if b > 0]
            row["ratio"][tname] = round(statistics.median(pairs), 2) if pairs else None
        # sipfs against the bare FUSE file system, paired the same way: what sipfs itself
        # costs on top of the kernel's round trips.
        if a.floor and (name, a.floor) not in errors and (name, "sipfs") not in errors:
            fs_ = times[name][a.floor]
            pairs = [t / f for t, f in zip(times[name].get("sipfs", []), fs_) if f > 0]
            row["over_floor"] = round(statistics.median(pairs), 2) if pairs else None
        result["rows"].append(row)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
