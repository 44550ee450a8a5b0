#!/usr/bin/env python3
"""The first fill of a mirror folder over a slow link, for scripts/bench (issue 30).

A project like the one measured in issue 30 (2 929 files, 43 MB: mostly small files in about
150 folders, a few MB-sized) sits in a folder that sshd exports. For each round trip asked
for, the share is an sshfs mount reached through scripts/slow_link.py (half the round trip
each way), mounted as docs/USER_GUIDE.md says (no stale listings), and, side by side in the
same run:
- a parallel copy of the tree: 16 `cp --preserve=timestamps` processes, each given whole
  folders' files (the folders made beforehand, the file list given: no listing is timed,
  which only makes the copy's figure lower);
- sipfs's first fill: `sipfs run --mode mirror SHARE -- true` into a new folder and cache;
- a second `sipfs run --mode mirror` of the same project, which reuses folder and cache;
- both again on an sshfs mount with `-o max_conns=4` (four SSH connections).
Each sshfs mount is fresh, so no measurement reads what another left in the client's cache.
Prints a table of seconds and ratios (fill / parallel copy). Tests never assert times; this
only measures.
"""
import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
from bench_day import free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def make_project(root, files=2929, small_max=12 * 1024, big=9, big_size=2_800_000):
    """Mostly small files (0.5-12 KiB) in ~150 folders up to 3 deep, and `big` files of
    `big_size`: about 43 MB in all."""
    rnd = random.Random(30)
    folders = [""]
    for i in range(150):
        parent = rnd.choice(folders) if len(folders) < 40 else rnd.choice(folders[:40])
        folders.append(os.path.join(parent, f"d{i:03d}"))
    for d in folders:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    total = 0
    for i in range(files):
        d = folders[i % len(folders)]
        size = big_size if i < big else rnd.randint(512, small_max)
        with open(os.path.join(root, d, f"f{i:04d}.csv"), "wb") as f:
            f.write(rnd.randbytes(size))
        total += size
    return total


def tree_files(root):
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)




class Link:
    """scripts/slow_link.py between sshfs and sshd, `rtt_ms` round trip."""

    def __init__(self, sshd_port, rtt_ms):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "slow_link.py"), str(self.port),
             str(sshd_port), str(rtt_ms / 2)])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class Sshfs:
    def __init__(self, a, link, export, mnt, extra=()):
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        subprocess.run(
            ["sshfs", f"root@127.0.0.1:{export}", mnt, "-p", str(link.port),
             "-o", f"IdentityFile={a.key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null",
             "-o", "dir_cache=no,attr_timeout=0,entry_timeout=0", *extra], check=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run(["fusermount3", "-u", self.mnt], check=False)


def parallel_cp(src, dest, files, procs=16):
    """16 cp processes at once, each copying one folder's files (in chunks) at a time."""
    by_dir = {}
    for f in files:
        by_dir.setdefault(os.path.dirname(f), []).append(f)
    jobs = []
    for d, fs in sorted(by_dir.items()):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
        for i in range(0, len(fs), 50):
            jobs.append((d, fs[i:i + 50]))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not jobs:
                    return
                d, fs = jobs.pop()
            subprocess.run(["cp", "--preserve=timestamps", *[os.path.join(src, f) for f in fs],
                            os.path.join(dest, d) + "/"], check=True)

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(procs)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def sipfs_run(a, share, folder, cache):
    """`sipfs run --mode mirror`, its time and its stderr (the fill's progress lines)."""
    t = time.perf_counter()
    p = subprocess.run([a.sipfs, "run", share, "--mode", "mirror", "--at", folder, "--cache",
                        cache, "--", "true"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=True)
    return time.perf_counter() - t, p.stderr


def same_tree(a_root, b_root, files):
    for f in files:
        if os.path.getsize(os.path.join(a_root, f)) != os.path.getsize(os.path.join(b_root, f)):
            return False
    return True


def measure(a, rtt, files):
    row = {"rtt_ms": rtt}
    link = Link(a.sshd_port, rtt)
    try:
        for conns, extra in ((1, ()), (4, ("-o", "max_conns=4"))):
            tag = f"{rtt}ms-c{conns}"
            with Sshfs(a, link, a.export, os.path.join(a.work, f"m-fill-cp-{tag}"), extra) as m:
                dest = os.path.join(a.work, f"fill-cp-{tag}")
                row[f"cp16_c{conns}"] = parallel_cp(os.path.join(m.mnt, "proj"), dest, files)
                shutil.rmtree(dest)
            with Sshfs(a, link, a.export, os.path.join(a.work, f"m-fill-s-{tag}"), extra) as m:
                folder = os.path.join(a.work, f"fill-{tag}")
                cache = os.path.join(a.work, f"fill-cache-{tag}")
                share = os.path.join(m.mnt, "proj")
                row[f"fill_c{conns}"], err = sipfs_run(a, share, folder, cache)
                row[f"progress_lines_c{conns}"] = sum(
                    "copying from the share" in l for l in err.splitlines())
                if not same_tree(os.path.join(a.export, "proj"), folder, files):
                    raise SystemExit(f"the fill of {folder} differs from the share")
                row[f"again_c{conns}"], _ = sipfs_run(a, share, folder, cache)
                shutil.rmtree(folder)
                shutil.rmtree(cache)
    finally:
        link.close()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sipfs", required=True)
    ap.add_argument("--work", required=True, help="scratch folder (the bench's ext4)")
    ap.add_argument("--sshd-port", type=int, required=True)
    ap.add_argument("--key", required=True, help="sshd's user key")
    ap.add_argument("--rtt", type=float, nargs="+", default=[20, 2],
                    help="round trips to measure, in ms")
    ap.add_argument("--files", type=int, default=2929)
    ap.add_argument("--out")
    a = ap.parse_args()
    a.export = os.path.join(a.work, "fill-export")
    proj = os.path.join(a.export, "proj")
    if not os.path.isdir(proj):
        size = make_project(proj, a.files)
    else:
        size = sum(os.path.getsize(os.path.join(proj, f)) for f in tree_files(proj))
    files = tree_files(proj)
    subprocess.run(["sync"], check=True)
    rows = [measure(a, rtt, files) for rtt in a.rtt]
    res = {"files": len(files), "bytes": size, "rows": rows}
    print(f"first fill of {len(files)} files, {size / 1e6:.0f} MB, over sshfs: seconds, and "
          f"the fill / the parallel copy (target 2x)")
    print("| round trip | sshfs connections | 16 cp processes | sipfs first fill | ratio | "
          "second run (reuse) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for c in (1, 4):
            print(f"| {r['rtt_ms']:g} ms | {c} | {r[f'cp16_c{c}']:.1f} s | "
                  f"{r[f'fill_c{c}']:.1f} s | {r[f'fill_c{c}'] / r[f'cp16_c{c}']:.2f}x | "
                  f"{r[f'again_c{c}']:.1f} s |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
