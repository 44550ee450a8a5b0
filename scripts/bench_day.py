#!/usr/bin/env python3
"""A lab's day on a distant share, for scripts/bench (issue 30).

The workflow manager's own step cycle, on a project of 2 929 files (43 MB, mostly small) that
lives on an sshfs share reached through scripts/slow_link.py, at each given round trip:

- refresh (sipfs only), then scan the project (os.walk + stat, its manifest);
- snapshot: a zip, in the project's `.workflow/snapshots/`, of the last step's outputs, the
  files added since the last manifest (at the first step: all of them) and the files a step
  changes (the database, `workflow_state.json`, 3 small parameter files);
- the step: 20 CSVs into a new output folder, rows into a SQLite database, a success marker,
  `workflow_state.json` (written to a temporary and renamed, as the manager's StateManager
  does), 3 small files changed; then a flush (sipfs only);
- after step 4 an undo: the files made since step 4's manifest are deleted and the snapshot's
  files restored, then a flush.

Targets: straight on the share (an sshfs mount as sshfs makes it by default, with its caches of
listings and attributes), a sipfs mount (of an sshfs mount without caches, as
docs/USER_GUIDE.md says a share for sipfs should be mounted), a sipfs mirror folder (its
first fill reported apart), rclone mount with `--vfs-cache-mode full` over the same link
(timed until the share holds what the day left: rclone writes back on its own timer), and a
local disk. Each target works on its own copy of the project on the share.

Beside them, in the same run, the floor of a step's flush: the round trips a Linux client of
the share cannot avoid to put the step's files on it. A Linux client holds a folder's lock
across each create in it, so the 21 new names in the new output folder are made one after
another; names in other folders overlap. Measured through the same sshfs mount: the new
folder, then its 21 names made empty one after another, while one name beside each changed
file is made in its folder (all from threads, one per folder). Plus transfer time: one file
of the step's bytes written, less one empty create.

Tests never assert times; this only measures. Every figure is from one run, side by side.
"""
import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import zipfile

sys.dont_write_bytecode = True  # no __pycache__ in scripts/

HERE = os.path.dirname(os.path.abspath(__file__))
STEP_CSVS = 20
CHANGED_SMALL = ["config/params-1.txt", "config/params-2.txt", "config/params-3.txt"]
DB = "project.db"
STATE = "workflow_state.json"
SKIP_DIRS = {".sipfs", ".workflow"}  # the manager's own folder, and sipfs's (see issue 30)


sys.dont_write_bytecode = True  # no __pycache__ in scripts/
from bench_slow import run, timed  # noqa: E402


# ---------------------------------------------------------------------------- the project


def make_template(root, seed=30):
    """2 929 files, about 43 MB: 2 750 small data files in 25 folders, 30 of 1 MiB, 100
    scripts, 46 config files, a SQLite database, the manager's state and a README."""
    rnd = random.Random(seed)
    for d in range(25):
        folder = os.path.join(root, "data", "raw", f"d{d:02d}")
        os.makedirs(folder)
        for i in range(110):
            with open(os.path.join(folder, f"sample-{i:03d}.csv"), "wb") as f:
                f.write(rnd.randbytes(rnd.randint(1024, 8192)))
    os.makedirs(os.path.join(root, "data", "big"))
    for i in range(30):
        with open(os.path.join(root, "data", "big", f"image-{i:02d}.tif"), "wb") as f:
            f.write(rnd.randbytes(1 << 20))
    os.makedirs(os.path.join(root, "scripts"))
    for i in range(100):
        with open(os.path.join(root, "scripts", f"tool_{i:03d}.py"), "w") as f:
            f.write(f"# tool {i}\n" + "x = 1\n" * rnd.randint(20, 400))
    os.makedirs(os.path.join(root, "config"))
    for i in range(1, 47):
        with open(os.path.join(root, "config", f"params-{i}.txt"), "w") as f:
            f.write(f"threshold = {i}\n")
    con = sqlite3.connect(os.path.join(root, DB))
    con.execute("create table results (step text, sample int, value real, note text)")
    con.executemany("insert into results values (?, ?, ?, ?)",
                    ((f"seed", i, rnd.random(), "x" * 40) for i in range(8000)))
    con.commit()
    con.close()
    with open(os.path.join(root, STATE), "w") as f:
        json.dump({"steps": []}, f)
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write("A project on a share.\n")


def count_tree(root):
    n = size = 0
    for d, dirs, files in os.walk(root):
        for name in files:
            n += 1
            size += os.lstat(os.path.join(d, name)).st_size
    return n, size


# ---------------------------------------------------------------------------- the day


def scan(root):
    """The manager's scan: every file with its size and time."""
    manifest = {}
    for d, dirs, files in os.walk(root):
        if d == root:
            dirs[:] = [x for x in dirs if x not in SKIP_DIRS]
        for name in files:
            p = os.path.join(d, name)
            st = os.stat(p)
            manifest[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return manifest


def snapshot(root, name, manifest, last_manifest, last_outputs):
    """Zips the last step's outputs, the files added since the last manifest and the files a
    step changes, into `.workflow/snapshots/NAME.zip`."""
    added = [p for p in manifest if p not in last_manifest]
    outs = [p for p in manifest if last_outputs and p.startswith(last_outputs + os.sep)]
    tracked = [DB, STATE] + CHANGED_SMALL
    folder = os.path.join(root, ".workflow", "snapshots")
    os.makedirs(folder, exist_ok=True)
    with zipfile.ZipFile(os.path.join(folder, name + ".zip"), "w", zipfile.ZIP_STORED) as z:
        for p in sorted(set(added) | set(outs) | set(tracked)):
            z.write(os.path.join(root, p), p)


def step(root, n, rnd):
    out = os.path.join("outputs", f"step-{n}")
    os.makedirs(os.path.join(root, out))
    for i in range(STEP_CSVS):
        with open(os.path.join(root, out, f"table-{i:02d}.csv"), "w") as f:
            for r in range(rnd.randint(40, 400)):
                f.write(f"{r},{rnd.random():.6f},{rnd.random():.6f},sample-{r}\n")
    con = sqlite3.connect(os.path.join(root, DB))
    con.executemany("insert into results values (?, ?, ?, ?)",
                    ((f"step-{n}", i, rnd.random(), "y" * 40) for i in range(500)))
    con.commit()
    con.close()
    open(os.path.join(root, out, "_SUCCESS"), "w").close()
    for p in CHANGED_SMALL:
        with open(os.path.join(root, p), "a") as f:
            f.write(f"# step {n}: {rnd.random():.6f}\n")
    state_path = os.path.join(root, STATE)
    with open(state_path) as f:
        state = json.load(f)
    state["steps"].append({"name": f"step-{n}", "outputs": out})
    tmp = state_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, state_path)
    return out


def undo(root, manifest, snap_name):
    """Deletes the files made since `manifest` and restores the snapshot's files."""
    now = scan(root)
    for p in now:
        if p not in manifest:
            os.unlink(os.path.join(root, p))
    for d, dirs, files in os.walk(os.path.join(root, "outputs"), topdown=False):
        if not os.listdir(d) and d != os.path.join(root, "outputs"):
            os.rmdir(d)
    with zipfile.ZipFile(os.path.join(root, ".workflow", "snapshots", snap_name + ".zip")) as z:
        for p in [DB, STATE] + CHANGED_SMALL:
            with z.open(p) as src, open(os.path.join(root, p), "wb") as dst:
                shutil.copyfileobj(src, dst)


def day(root, refresh=None, flush=None, seed=1):
    """One day; returns seconds per part."""
    rnd = random.Random(seed)
    parts = {k: 0.0 for k in ("refreshes", "scans", "snapshots", "steps", "flushes", "undo")}
    flush_times = []

    def t(part, f):
        s = time.perf_counter()
        r = f()
        parts[part] += time.perf_counter() - s
        return r

    def do_flush(label):
        if flush:
            s = time.perf_counter()
            flush(label)
            flush_times.append(time.perf_counter() - s)
            parts["flushes"] += flush_times[-1]

    last_manifest, last_outputs, manifests = {}, None, {}
    plan = [1, 2, 3, 4, "undo", 4, 5]
    for item in plan:
        if refresh:
            t("refreshes", refresh)
        if item == "undo":
            t("undo", lambda: undo(root, manifests[4], "step-4"))
            do_flush("undo-4")
            last_manifest = manifests[4]
            last_outputs = None
            continue
        manifest = t("scans", lambda: scan(root))
        manifests[item] = manifest
        t("snapshots", lambda: snapshot(root, f"step-{item}", manifest, last_manifest, last_outputs))
        last_outputs = t("steps", lambda: step(root, item, rnd))
        do_flush(f"step-{item}")
        last_manifest = manifest
    parts["flush_each"] = flush_times
    return parts


def tree_state(root):
    """What a folder holds: each file's size, as the share should hold it after the day."""
    out = {}
    for d, dirs, files in os.walk(root):
        if d == root:
            dirs[:] = [x for x in dirs if x != ".sipfs"]
        for name in files:
            p = os.path.join(d, name)
            out[os.path.relpath(p, root)] = os.lstat(p).st_size
    return out


def wait_until_holds(export, expected, timeout=600):
    """Waits until the share's own folder holds `expected` (rclone's write-back)."""
    end = time.time() + timeout
    while time.time() < end:
        if tree_state(export) == expected:
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------- the floor


def flush_floor(share_root, tag, delay_s):
    """The round trips a Linux client cannot avoid for a step's flush, through the share's
    own client: the new output folder with its 21 names, one after another, while a name
    beside each changed file is made in its folder (one thread per folder)."""
    base = os.path.join(share_root, f"floor-{tag}")
    os.makedirs(os.path.join(base, "config"))
    os.makedirs(os.path.join(base, "outputs"))

    def create(p):
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY))

    def new_folder():
        d = os.path.join(base, "outputs", "step-1")
        os.mkdir(d)
        for i in range(STEP_CSVS):
            create(os.path.join(d, f"table-{i:02d}.csv"))
        create(os.path.join(d, "_SUCCESS"))

    def top():
        for p in (DB, STATE):
            create(os.path.join(base, f".{p}.tmp"))

    def config():
        for p in CHANGED_SMALL:
            create(os.path.join(base, "config", "." + os.path.basename(p) + ".tmp"))

    def together():
        threads = [threading.Thread(target=f) for f in (new_folder, top, config)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    return timed(together)


def transfer_time(share_root, tag, nbytes):
    """Writing the step's bytes as one file, less one empty create: the transfer time."""
    data = os.urandom(nbytes)
    empty = timed(lambda: open(os.path.join(share_root, f"xfer-empty-{tag}"), "wb").close())

    def write():
        with open(os.path.join(share_root, f"xfer-{tag}"), "wb") as f:
            f.write(data)
    return max(0.0, timed(write) - empty)


# ---------------------------------------------------------------------------- the targets


def share_cache_opts(stat_cache_s):
    """sshfs options for the share sipfs reads. With no cache (the default), every stat after a
    listing is its own round trip. With sshfs's cache on but its listings never reused
    (dcache_dir_timeout=0), a stat made just after a listing is answered from the attributes the
    READDIR reply carried: as fresh as the listing itself, up to STAT_CACHE_S seconds old for a
    stat made later (issue 30: what that costs the flush's checks is still to weigh)."""
    base = "attr_timeout=0,entry_timeout=0"
    if not stat_cache_s:
        return "dir_cache=no," + base
    return (f"dir_cache=yes,dcache_dir_timeout=0,dcache_link_timeout=0,"
            f"dcache_stat_timeout={stat_cache_s}," + base)


class Link:
    """The share over a slow link: a relay to the sshd, an sshfs mount through it (mounted as
    docs/USER_GUIDE.md says a share for sipfs should be), and rclone's own SFTP client through
    it as a mount with a full cache."""

    def __init__(self, a, rtt_ms):
        self.a = a
        self.rtt_ms = rtt_ms
        self.port = free_port()
        self.relay = subprocess.Popen([sys.executable, os.path.join(HERE, "slow_link.py"),
                                       str(self.port), str(a.sshd_port), str(rtt_ms / 2)])
        wait_port(self.port)
        self.share = os.path.join(a.work, f"day-sshfs-{rtt_ms}")
        os.makedirs(self.share, exist_ok=True)
        ssh_opt = f"IdentityFile={a.key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null"
        run("sshfs", f"root@127.0.0.1:{a.export}", self.share, "-p", str(self.port),
            "-o", ssh_opt, "-o", share_cache_opts(a.share_stat_cache))
        # Working straight on the share, users mount it as sshfs does by default: its caches
        # of listings and attributes (20 s) spare them most round trips of a repeated scan.
        self.user_share = os.path.join(a.work, f"day-sshfs-user-{rtt_ms}")
        os.makedirs(self.user_share, exist_ok=True)
        run("sshfs", f"root@127.0.0.1:{a.export}", self.user_share, "-p", str(self.port),
            "-o", ssh_opt)
        self.rclone = os.path.join(a.work, f"day-rclone-{rtt_ms}")
        os.makedirs(self.rclone, exist_ok=True)
        run("rclone", "mount",
            f":sftp,host=127.0.0.1,port={self.port},user=root,key_file={a.key}:{a.export}",
            self.rclone, "--vfs-cache-mode", "full",
            "--cache-dir", os.path.join(a.work, f"day-rclone-cache-{rtt_ms}"), "--daemon",
            stderr=subprocess.DEVNULL)
        wait_mounted(self.rclone)

    def close(self):
        for m in (self.rclone, self.share, self.user_share):
            subprocess.run(["fusermount3", "-u", m], stderr=subprocess.DEVNULL)
        self.relay.terminate()
        self.relay.wait()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port):
    import socket
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wait_mounted(path):
    for _ in range(200):
        if os.path.ismount(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} is not mounted")


def copy_project(a, name):
    dst = os.path.join(a.export, name)
    run("cp", "-a", os.path.join(a.export, "day-template"), dst)
    return dst


def target_share(a, link):
    name = f"day-share-{link.rtt_ms}"
    export = copy_project(a, name)
    parts = day(os.path.join(link.user_share, name))
    return parts, tree_state(export) == tree_state(os.path.join(link.user_share, name)), export


def target_mount(a, link, prefetch=False):
    tag = "-prefetch" if prefetch else ""
    name = f"day-mount{tag}-{link.rtt_ms}"
    export = copy_project(a, name)
    mnt = os.path.join(a.work, f"day-m{tag}-{link.rtt_ms}")
    cache = os.path.join(a.work, f"day-mount{tag}-cache-{link.rtt_ms}")
    os.makedirs(mnt, exist_ok=True)
    extra = ["--prefetch"] if prefetch else []
    mount_s = timed(lambda: run(a.sipfs, "mount", os.path.join(link.share, name), mnt,
                                "--cache", cache, "--daemon", *extra))
    parts = day(mnt, refresh=lambda: run(a.sipfs, "refresh", mnt),
                flush=lambda label: run(a.sipfs, "flush", mnt, "--step", label))
    left = tree_state(mnt)
    run(a.sipfs, "unmount", mnt)
    parts["prefetch" if prefetch else "mount"] = mount_s
    return parts, tree_state(export) == left, export


def target_steps_only(a, link):
    """The steps and their refreshes and flushes alone, through a fresh mount: no scan and no
    snapshot, so no first reads (a quick look at a step boundary's cost, `--steps-only`)."""
    name = f"day-steps-{link.rtt_ms}"
    export = copy_project(a, name)
    mnt = os.path.join(a.work, f"day-m-steps-{link.rtt_ms}")
    os.makedirs(mnt, exist_ok=True)
    run(a.sipfs, "mount", os.path.join(link.share, name), mnt,
        "--cache", os.path.join(a.work, f"day-steps-cache-{link.rtt_ms}"), "--daemon")
    parts = {k: 0.0 for k in ("refreshes", "scans", "snapshots", "steps", "flushes", "undo")}
    parts["flush_each"] = []
    rnd = random.Random(1)
    for n in range(1, 6):
        parts["refreshes"] += timed(lambda: run(a.sipfs, "refresh", mnt))
        parts["steps"] += timed(lambda: step(mnt, n, rnd))
        parts["flush_each"].append(timed(lambda: run(a.sipfs, "flush", mnt, "--step", f"s{n}")))
        parts["flushes"] += parts["flush_each"][-1]
    left = tree_state(mnt)
    run(a.sipfs, "unmount", mnt)
    return parts, tree_state(export) == left, export


def target_mount_prefetch(a, link):
    return target_mount(a, link, prefetch=True)


def target_mirror(a, link):
    name = f"day-mirror-{link.rtt_ms}"
    export = copy_project(a, name)
    folder = os.path.join(a.work, f"day-mirror-{link.rtt_ms}")
    cache = os.path.join(a.work, f"day-mirror-cache-{link.rtt_ms}")
    t0 = time.perf_counter()
    proc = subprocess.Popen([a.sipfs, "mirror", os.path.join(link.share, name), folder,
                             "--cache", cache], stderr=subprocess.PIPE, text=True)
    # The mirror's log, beside its folder, for a look at where a day's time went.
    log = open(folder + ".log", "w")
    for line in proc.stderr:
        log.write(line)
        if "mirrored in" in line:
            break
    fill = time.perf_counter() - t0

    def keep_log():
        with log:
            for line in proc.stderr:
                log.write(line)
    threading.Thread(target=keep_log, daemon=True).start()
    parts = day(folder, refresh=lambda: run(a.sipfs, "refresh", folder),
                flush=lambda label: run(a.sipfs, "flush", folder, "--step", label))
    left = tree_state(folder)
    run(a.sipfs, "unmount", folder)
    proc.wait(timeout=120)
    parts["fill"] = fill
    return parts, tree_state(export) == left, export


def target_rclone(a, link):
    name = f"day-rclone-{link.rtt_ms}"
    export = copy_project(a, name)
    root = os.path.join(link.rclone, name)
    parts = day(root)
    expected = tree_state(root)
    parts["write-back wait"] = timed(lambda: wait_until_holds(export, expected))
    return parts, tree_state(export) == expected, export


def target_local(a, link):
    root = os.path.join(a.work, f"day-local-{link.rtt_ms}")
    run("cp", "-a", os.path.join(a.export, "day-template"), root)
    return day(root), True, root


TARGETS = [
    ("straight on the share", target_share),
    ("sipfs mount", target_mount),
    ("sipfs mount --prefetch", target_mount_prefetch),
    ("sipfs mirror", target_mirror),
    ("rclone mount, full cache", target_rclone),
    ("local disk", target_local),
]
STEPS_ONLY = [("sipfs mount, steps only", target_steps_only)]


def step_bytes(a):
    """About what a step's flush writes: 20 CSVs of ~8 KB, the database, the small files."""
    return STEP_CSVS * 8000 + os.path.getsize(os.path.join(a.export, "day-template", DB)) + 4096


def measure(a, rtt_ms):
    link = Link(a, rtt_ms)
    try:
        floors = [flush_floor(link.share, f"{rtt_ms}-{i}", rtt_ms / 1000) for i in range(5)]
        xfer = statistics.median(transfer_time(link.share, f"{rtt_ms}-{i}", step_bytes(a))
                                 for i in range(3))
        print(f"day: {rtt_ms} ms: a step's flush floor {statistics.median(floors):.3f} s "
              f"({', '.join(f'{x:.3f}' for x in floors)}), transfer {xfer:.3f} s", flush=True)
        rows = {}
        for name, f in (STEPS_ONLY if a.steps_only else TARGETS):
            if a.only and not any(name.startswith(o) for o in a.only.split(",")):
                continue
            # Without a prefetch, each file's first read through the mount waits for its
            # fetch, one after another: past a few ms that takes most of an hour.
            if name == "sipfs mount" and rtt_ms > a.plain_mount_upto:
                continue
            print(f"day: {rtt_ms} ms: {name}...", flush=True)
            parts, same, export = f(a, link)
            total = sum(v for k, v in parts.items()
                        if k not in ("flush_each", "fill", "mount", "prefetch"))
            rows[name] = {"total": total, "parts": parts, "share_holds_the_day": same}
            print(f"day: {rtt_ms} ms: {name}: {total:.1f} s "
                  f"({', '.join(f'{k} {v:.1f}' for k, v in parts.items() if k != 'flush_each')})"
                  f"{'' if same else ' -- THE SHARE DOES NOT HOLD WHAT THE DAY LEFT'}", flush=True)
        return {"rtt_ms": rtt_ms, "floor": statistics.median(floors), "floors": floors,
                "transfer": xfer, "rows": rows}
    finally:
        link.close()


def report(results):
    lines = []
    for r in results:
        base = r["rows"].get("straight on the share", {}).get("total")
        floor = r["floor"] + r["transfer"]
        lines.append(f"\n{r['rtt_ms']} ms round trip; a step's flush floor {r['floor']:.3f} s "
                     f"+ transfer {r['transfer']:.3f} s\n")
        lines.append("| way of working | whole day (s) | to straight on the share | scans | snapshots | steps | refreshes | flushes | undo | else | flush over floor (median, max) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, row in r["rows"].items():
            p = row["parts"]
            ratio = f"{row['total'] / base:.2f}x" if base else "-"
            other = []
            if "fill" in p:
                other.append(f"fill {p['fill']:.1f} s (not in the day)")
            if "prefetch" in p:
                other.append(f"mount with prefetch {p['prefetch']:.1f} s (not in the day)")
            if "write-back wait" in p:
                other.append(f"until the share holds it {p['write-back wait']:.1f} s")
            if not row["share_holds_the_day"]:
                other.append("the share does not hold what the day left")
            fl = p["flush_each"]
            over = (f"{statistics.median(fl) / floor:.2f}x, {max(fl) / floor:.2f}x"
                    if fl else "-")
            lines.append(f"| {name} | {row['total']:.1f} | {ratio} | {p['scans']:.1f} | "
                         f"{p['snapshots']:.1f} | {p['steps']:.1f} | {p['refreshes']:.1f} | "
                         f"{p['flushes']:.1f} | {p['undo']:.1f} | {'; '.join(other) or '-'} | {over} |")
    return "\n".join(lines)


def start_sshd(work):
    """An sshd on 127.0.0.1 with its own keys, for a run of this script alone."""
    key = os.path.join(work, "day_user_key")
    host = os.path.join(work, "day_host_key")
    for k in (key, host):
        for old in (k, k + ".pub"):  # from an earlier run in the same folder
            if os.path.exists(old):
                os.unlink(old)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k)
    port = free_port()
    conf = os.path.join(work, "day_sshd_config")
    with open(conf, "w") as f:
        f.write(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host}\n"
                f"PidFile {work}/day_sshd.pid\nAuthorizedKeysFile {key}.pub\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "StrictModes no\nSubsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", conf])
    wait_port(port)
    return proc, port, key


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sipfs", required=True)
    ap.add_argument("--work", required=True, help="a folder on a local disk")
    ap.add_argument("--export", help="the share's folder as the server has it (default: WORK/export)")
    ap.add_argument("--sshd-port", type=int, help="an sshd on 127.0.0.1 (default: one of our own)")
    ap.add_argument("--key", help="its user key")
    ap.add_argument("--rtt-ms", default="2,20")
    ap.add_argument("--only", help="targets whose name starts with one of these (comma-separated)")
    ap.add_argument("--plain-mount-upto", type=int, default=2,
                    help="the mount without --prefetch only up to this round trip (ms)")
    ap.add_argument("--steps-only", action="store_true",
                    help="only a step boundary's cost: 5 steps through a mount, no scans")
    ap.add_argument("--share-stat-cache", type=int, default=0,
                    help="seconds sipfs's sshfs mount keeps the attributes a listing brought "
                         "(0: no sshfs cache, each stat a round trip)")
    ap.add_argument("--out")
    a = ap.parse_args()
    a.export = a.export or os.path.join(a.work, "export")
    os.makedirs(a.export, exist_ok=True)
    sshd = None
    if a.sshd_port is None:
        sshd, a.sshd_port, a.key = start_sshd(a.work)
    try:
        make_template(os.path.join(a.export, "day-template"))
        n, size = count_tree(os.path.join(a.export, "day-template"))
        print(f"day: a project of {n} files, {size / 1e6:.0f} MB", flush=True)
        results = [measure(a, int(r)) for r in a.rtt_ms.split(",")]
        print(report(results))
        if a.out:
            json.dump({"files": n, "bytes": size, "results": results}, open(a.out, "w"), indent=1)
    finally:
        if sshd:
            sshd.send_signal(signal.SIGTERM)
            sshd.wait()


if __name__ == "__main__":
    main()
