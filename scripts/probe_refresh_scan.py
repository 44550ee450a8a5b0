#!/usr/bin/env python3
"""Issue 30 probe: what a refresh-like scan (a level at a time, 8 folders and 16 stats each in
flight, as fs-core's refresh and DirBacking::list do) costs over sshfs through slow_link.py,
with sipfs's share mounted as bench_day mounts it (no sshfs cache: each stat a round trip)
and with sshfs's cache keeping a READDIR reply's attributes 1 s (listings never reused).
Usage: probe_refresh_scan.py RTT_MS (makes /var/tmp/rx30/export: 151 folders x 19 files)."""
import concurrent.futures as cf
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in scripts/
import bench_day as b  # noqa: E402
work = "/var/tmp/rx30"
exp = os.path.join(work, "export")
if not os.path.exists(exp):
    for d in range(151):
        p = os.path.join(exp, f"d{d//12}", f"s{d}")
        os.makedirs(p, exist_ok=True)
        for f in range(19):
            open(os.path.join(p, f"f{f}.csv"), "w").write("x" * 100)
sshd, port, key = b.start_sshd(work)
rtt = int(sys.argv[1])
lport = b.free_port()
relay = subprocess.Popen([sys.executable, os.path.join(HERE, "slow_link.py"), str(lport), str(port), str(rtt / 2)])
b.wait_port(lport)
ssh_opt = f"IdentityFile={key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null"
opts = {"nocache": b.share_cache_opts(0),
        "dircache1": b.share_cache_opts(1)}
def scan(root):
    """A level of folders at a time: 8 listed together, each entry of each stat'ed (up to 128
    stats in flight), as the refresh does."""
    dirs = [root]
    allfiles = 0
    while dirs:
        with cf.ThreadPoolExecutor(8) as folders, cf.ThreadPoolExecutor(16 * 8) as stats:
            def one(d):
                names = os.listdir(d)
                sts = list(stats.map(lambda n: os.lstat(os.path.join(d, n)), names))
                subdirs = [os.path.join(d, n) for n, st in zip(names, sts) if (st.st_mode & 0o170000) == 0o040000]
                return subdirs, len(names)

            res = list(folders.map(one, dirs))
        dirs = [x for r in res for x in r[0]]
        allfiles += sum(r[1] for r in res)
    return allfiles
try:
    for name, o in opts.items():
        m = os.path.join(work, "m-" + name); os.makedirs(m, exist_ok=True)
        b.run("sshfs", f"root@127.0.0.1:{exp}", m, "-p", str(lport), "-o", ssh_opt, "-o", o)
        for i in range(2):
            t = time.time(); n = scan(m); print(rtt, name, "entries", n, "scan s %.2f" % (time.time() - t), flush=True)
            time.sleep(2.5)
        subprocess.run(["fusermount3", "-u", m])
finally:
    relay.terminate(); sshd.terminate()
