#!/usr/bin/env python3
"""What an incremental flush costs, for scripts/bench (issue 14).

Two steps, each against a local share folder (no delay: what is measured is the work a flush
does beyond writing what changed):

- a mount of a 20 000-file project, 50 files changed, `sipfs flush`; beside it the floor, a
  `cp` of the 50 files onto a copy of the share, the durable floor (the same `cp`, then each
  file synced: a flush syncs each file before it renames it into place), and `rsync -a` of
  the whole tree onto another;
- a mirror folder of 100 000 files, 50 changed, `sipfs flush FOLDER`; beside it `rsync -a` of
  the same tree.

Medians over the repetitions; each repetition changes 50 other files. Tests never assert
times; this only measures.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
from bench_slow import row, run, timed  # noqa: E402


def make_tree(root, files, per_dir=100, size=4096):
    for i in range(files):
        d = os.path.join(root, f"d{i // per_dir:04d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}.csv"), "wb") as f:
            f.write(b"x" * size)


def changed(files, rep, n=50, per_dir=100):
    """The relative paths of the `n` files a repetition changes, spread over the tree."""
    step = files // n
    return [f"d{(k * step + rep) // per_dir:04d}/f{k * step + rep:06d}.csv" for k in range(n)]


def change(root, paths, rep):
    for p in paths:
        with open(os.path.join(root, p), "wb") as f:
            f.write(f"changed in repetition {rep}\n".encode() * 100)


def mounted_flush(a):
    n = 20000
    share = os.path.join(a.work, "flush-share")
    local = os.path.join(a.work, "flush-local")
    cp_dest = os.path.join(a.work, "flush-cp")
    sync_dest = os.path.join(a.work, "flush-cp-sync")
    rsync_dest = os.path.join(a.work, "flush-rsync")
    make_tree(share, n)
    for d in (local, cp_dest, sync_dest, rsync_dest):
        shutil.copytree(share, d)
    mnt = os.path.join(a.work, "m-flush")
    cache = os.path.join(a.work, "flush-cache")
    os.makedirs(mnt, exist_ok=True)
    run(a.sipfs, "mount", share, mnt, "--cache", cache, "--daemon")
    runs = []
    try:
        run("find", mnt, "-printf", "%s %T@\n")  # the project as a step sees it: all known
        for rep in range(a.reps):
            paths = changed(n, rep)
            change(mnt, paths, rep)
            sip = timed(lambda: run(a.sipfs, "flush", mnt))
            change(local, paths, rep)
            cp = timed(lambda: subprocess.run(["cp", "--parents", *paths, cp_dest],
                                              cwd=local, check=True))
            # The floor of a durable write: the same cp, then each file synced to disk (`sync
            # FILE...` fsyncs each), as a flush does before it renames a file into place.
            durable = timed(lambda: (
                subprocess.run(["cp", "--parents", *paths, sync_dest], cwd=local, check=True),
                subprocess.run(["sync", *paths], cwd=sync_dest, check=True)))
            rsync = timed(lambda: run("rsync", "-a", local + "/", rsync_dest + "/"))
            runs.append({"a cp of the 50": cp, "cp, then sync of each": durable,
                         "rsync -a of the tree": rsync, "sipfs flush": sip})
            print(f"flush: rep {rep + 1}/{a.reps} done", flush=True)
    finally:
        run(a.sipfs, "unmount", mnt)
    return runs


def mirror_flush(a):
    n = a.mirror_files
    share = os.path.join(a.work, "mirror-share")
    folder = os.path.join(a.work, "mirror-folder")
    rsync_dest = os.path.join(a.work, "mirror-rsync")
    make_tree(share, n, size=0)
    shutil.copytree(share, rsync_dest)
    cache = os.path.join(a.work, "mirror-cache")
    proc = subprocess.Popen([a.sipfs, "mirror", share, folder, "--cache", cache],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = []
    try:
        deadline = time.time() + 600
        while not os.path.exists(os.path.join(cache, "status.json")):
            assert proc.poll() is None, "sipfs mirror exited"
            assert time.time() < deadline, "mirror not ready"
            time.sleep(0.1)
        run(a.sipfs, "flush", folder)  # settled: what follows is the incremental cost
        for rep in range(a.reps):
            paths = changed(n, rep)
            change(folder, paths, rep)
            sip = timed(lambda: run(a.sipfs, "flush", folder))
            rsync = timed(lambda: run("rsync", "-a", "--exclude", ".sipfs",
                                      folder + "/", rsync_dest + "/"))
            runs.append({"rsync -a of the tree": rsync, "sipfs flush": sip})
            print(f"mirror flush: rep {rep + 1}/{a.reps} done", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=300)
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sipfs", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mirror-files", type=int, default=100000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = [
        row("flush after 50 of 20 000 files changed", mounted_flush(a), "a cp of the 50",
            "<= 1.5x the floor (a cp of the 50)"),
        row(f"mirror folder of {a.mirror_files:,} files, flush after 50 changed",
            mirror_flush(a), "rsync -a of the tree", "<= 0.1 s"),
    ]
    json.dump({"reps": a.reps, "rows": rows}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
