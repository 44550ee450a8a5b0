"""Usage: bench_remove.py --work DIR old=PATH/TO/sipfs new=PATH/TO/sipfs

A flush that removes files on an sshfs share 20 ms away: two sipfs binaries side by side,
alternating, in one run. Each round: a fresh copy of the project, mounted, every file read
(so the cache knows each version's content), 20 files removed, `sipfs flush` timed."""
import argparse, os, shutil, subprocess, sys, time, types
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_day as bd

ap = argparse.ArgumentParser()
ap.add_argument("--work", required=True, help="a folder on a local disk")
ap.add_argument("--rtt-ms", type=int, default=20)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("bins", nargs="+", help="NAME=PATH")
a = ap.parse_args()
# Its own folder inside WORK, made afresh: nothing else there is touched.
a.work = os.path.join(a.work, "bench-remove")
shutil.rmtree(a.work, ignore_errors=True)
os.makedirs(a.work)
export = os.path.join(a.work, "export")
os.makedirs(export)
sshd, port, key = bd.start_sshd(a.work)
cfg = types.SimpleNamespace(work=a.work, export=export, sshd_port=port, key=key, share_stat_cache=0)
link = bd.Link(cfg, a.rtt_ms)
results = {}
try:
    for r in range(a.rounds):
        for spec in a.bins:
            name, binp = spec.split("=", 1)
            proj = f"p-{name}-{r}"
            src = os.path.join(export, proj)
            os.makedirs(src)
            for i in range(40):
                with open(os.path.join(src, f"f{i:02}.csv"), "w") as f:
                    f.write(f"row {i}\n" * 50)
            mnt = os.path.join(a.work, f"m-{proj}")
            cache = os.path.join(a.work, f"c-{proj}")
            os.makedirs(mnt)
            subprocess.run([binp, "mount", os.path.join(link.share, proj), mnt, "--cache", cache, "--daemon"], check=True)
            for i in range(40):
                open(os.path.join(mnt, f"f{i:02}.csv")).read()
            subprocess.run([binp, "flush", mnt], check=True, stdout=subprocess.DEVNULL)
            for i in range(20):
                os.unlink(os.path.join(mnt, f"f{i:02}.csv"))
            t = time.monotonic()
            subprocess.run([binp, "flush", mnt], check=True, stdout=subprocess.DEVNULL)
            dt = time.monotonic() - t
            # the next flush removes the captured old versions
            t2 = time.monotonic()
            subprocess.run([binp, "flush", mnt], check=True, stdout=subprocess.DEVNULL)
            dt2 = time.monotonic() - t2
            subprocess.run([binp, "unmount", mnt], check=True)
            left = sorted(os.listdir(src))
            results.setdefault(name, []).append((dt, dt2, len(left)))
            print(name, r, f"removal flush {dt:.2f} s, next flush {dt2:.2f} s, files left {len(left)}", flush=True)
finally:
    link.close()
    sshd.terminate()
for name, rs in results.items():
    med = sorted(x[0] for x in rs)[len(rs) // 2]
    med2 = sorted(x[1] for x in rs)[len(rs) // 2]
    print(f"{name}: median removal flush {med:.2f} s, next {med2:.2f} s, runs {[round(x[0],2) for x in rs]}")
