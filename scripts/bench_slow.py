#!/usr/bin/env python3
"""Round trips to a share over a slow link, for scripts/bench (issue 14).

The share is an sshfs mount whose sshd is reached through scripts/slow_link.py, which delays
every byte by the given time in each direction. Each step is timed through sipfs (a fresh
mount with a new cache each repetition) and as users would do it without sipfs; the figure
is the median over the repetitions of the paired ratio. Tests never assert times; this only
measures.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import time


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


class Sipfs:
    """A fresh sipfs mount of the share, with a new cache."""

    def __init__(self, a, tag):
        self.a = a
        self.mnt = os.path.join(a.work, f"m-slow-sipfs-{tag}")
        self.cache = os.path.join(a.work, f"slow-cache-{tag}")
        os.makedirs(self.mnt, exist_ok=True)
        run(a.sipfs, "mount", a.share, self.mnt, "--cache", self.cache, "--daemon")

    def flush(self):
        run(self.a.sipfs, "flush", self.mnt)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        run(self.a.sipfs, "unmount", self.mnt)
        shutil.rmtree(self.cache, ignore_errors=True)


def small_files(root, n):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        with open(os.path.join(root, f"f{i:04d}.csv"), "wb") as f:
            f.write(os.urandom(4096))


def make_names(root, n):
    """Makes `n` empty files in the new folder `root`, one after another."""
    os.makedirs(root)
    for i in range(n):
        os.close(os.open(os.path.join(root, f"f{i:04d}.csv"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))


def make_names_parallel(root, n, workers=8):
    """Makes `n` empty files in the new folder `root`, `workers` at a time: the floor of any
    writer of `n` new files into one folder, which issue 27 holds a flush to (1.25x)."""
    from concurrent.futures import ThreadPoolExecutor
    os.makedirs(root)

    def make(i):
        os.close(os.open(os.path.join(root, f"f{i:04d}.csv"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, range(n)))


def landed(folder, n, size):
    """Waits until the share's own folder holds the `n` files `small_files` makes, whole."""
    while True:
        try:
            whole = [e for e in os.scandir(folder)
                     if e.name.startswith("f") and e.name.endswith(".csv")
                     and e.stat().st_size == size]
            if len(whole) == n:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)


def flush_new_files(a, rep):
    """200 new 4 KiB files: `cp -r` onto the share, rsync over ssh, and a sipfs flush.

    Beside them, the names alone: the 200 files made empty in a new folder of the share, one
    after another. A Linux client holds a folder's lock across each create in it (and each
    rename into it), so this is what any writer of the 200 files into one folder pays,
    however many requests it has in flight."""
    src = os.path.join(a.work, f"slow-src-{rep}")
    small_files(src, 200)
    names = timed(lambda: make_names(os.path.join(a.share, f"names-{rep}"), 200))
    names8 = timed(lambda: make_names_parallel(os.path.join(a.share, f"names8-{rep}"), 200))
    cp = timed(lambda: run("cp", "-r", src, os.path.join(a.share, f"cp-{rep}")))
    rsync = timed(lambda: run("rsync", "-r", "-e", a.ssh, src + "/",
                              f"root@127.0.0.1:{a.export}/rsync-{rep}/"))
    with Sipfs(a, f"flush-{rep}") as m:
        run("cp", "-r", src, os.path.join(m.mnt, f"sipfs-{rep}"))
        sip = timed(m.flush)
    out = {"serial cp -r": cp, "rsync over ssh": rsync, "the names alone": names,
           "the names alone, 8 at a time": names8, "sipfs flush": sip}
    if a.rclone:
        # Written into its cache, then uploaded in the background: timed until the share
        # holds every file whole.
        def rclone():
            run("cp", "-r", src, os.path.join(a.rclone, f"rclone-{rep}"))
            landed(os.path.join(a.export, f"rclone-{rep}"), 200, 4096)
        out["rclone mount"] = timed(rclone)
    return out


def first_bytes(a, rep):
    """The first 4 KiB of a 64 MiB file that is on the share (a new file each time)."""
    name = f"big-{rep}.bin"
    with open(os.path.join(a.export, name), "wb") as f:
        f.write(os.urandom(64 << 20))

    def head(path):
        with open(path, "rb") as f:
            assert len(f.read(4096)) == 4096

    # The same file through sshfs, then through sipfs: sshfs reads only what is asked.
    direct = timed(lambda: head(os.path.join(a.share, name)))
    with Sipfs(a, f"big-{rep}") as m:
        sip = timed(lambda: head(os.path.join(m.mnt, name)))
    out = {"straight from the share": direct, "sipfs": sip}
    if a.rclone:
        out["rclone mount"] = timed(lambda: head(os.path.join(a.rclone, name)))
    return out


def whole_file(a, rep):
    """A 64 MiB file on the share read once from start to end, as a copy off the share does."""
    name = f"whole-{rep}.bin"
    with open(os.path.join(a.export, name), "wb") as f:
        f.write(os.urandom(64 << 20))

    def cat(path):
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass

    direct = timed(lambda: cat(os.path.join(a.share, name)))
    with Sipfs(a, f"whole-{rep}") as m:
        sip = timed(lambda: cat(os.path.join(m.mnt, name)))
    out = {"straight from the share": direct, "sipfs": sip}
    if a.rclone:
        out["rclone mount"] = timed(lambda: cat(os.path.join(a.rclone, name)))
    return out


def first_listing(a, rep):
    """The first listing with sizes and times of 1000 files in 10 folders on the share."""
    root = os.path.join(a.export, f"tree-{rep}")
    for d in range(10):
        small = os.path.join(root, f"d{d:02d}")
        os.makedirs(small)
        for i in range(100):
            open(os.path.join(small, f"f{i:03d}"), "wb").close()

    def find(path):
        run("find", path, "-printf", "%s %T@\n")

    direct = timed(lambda: find(os.path.join(a.share, f"tree-{rep}")))
    with Sipfs(a, f"tree-{rep}") as m:
        sip = timed(lambda: find(os.path.join(m.mnt, f"tree-{rep}")))
    out = {"straight on the share": direct, "sipfs": sip}
    if a.rclone:
        out["rclone mount"] = timed(lambda: find(os.path.join(a.rclone, f"tree-{rep}")))
    return out


STEPS = [
    ("flush of 200 new 4 KiB files", flush_new_files, "serial cp -r",
     "<= 0.5x the serial cp -r"),
    # The same runs, against the floor issue 27 holds the commit protocol to.
    ("flush of 200 new 4 KiB files, against the names alone", None,
     "the names alone, 8 at a time", "<= 1.25x the names alone, 8 at a time"),
    ("first 4 KiB of a 64 MiB file", first_bytes, "straight from the share",
     "<= 3x reading straight from the share"),
    ("a 64 MiB file read once, start to end", whole_file, "straight from the share",
     "<= 1.5x (keep)"),
    ("first listing with stats, 1000 files", first_listing, "straight on the share",
     "<= 1.2x"),
]


def row(name, runs, base, target):
    """A table row: median seconds per column, and the median of each column's paired ratio
    to `base` (scripts/bench_flush.py uses it too)."""
    cols = list(runs[0])
    return {
        "name": name,
        "target": target,
        "base": base,
        "seconds": {c: statistics.median(r[c] for r in runs) for c in cols},
        "ratio": {c: round(statistics.median(r[c] / r[base] for r in runs), 2)
                  for c in cols if c != base},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sipfs", required=True)
    ap.add_argument("--share", required=True, help="the sshfs mount over the slow link")
    ap.add_argument("--export", required=True, help="the same folder as the server has it")
    ap.add_argument("--ssh", required=True, help="ssh command through the slow link, for rsync")
    ap.add_argument("--rclone", help="an rclone mount of the same folder over the slow link")
    ap.add_argument("--work", required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="run only the steps whose name contains this")
    a = ap.parse_args()
    rows = []
    runs = []
    for name, step, base, target in STEPS:
        if a.only and a.only not in name:
            continue
        if step is not None:
            runs = []
            for rep in range(a.reps):
                runs.append(step(a, rep))
                print(f"slow link: rep {rep + 1}/{a.reps}: {name} done", flush=True)
        rows.append(row(name, runs, base, target))
    json.dump({"delay_ms": a.delay_ms, "reps": a.reps, "rows": rows}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
