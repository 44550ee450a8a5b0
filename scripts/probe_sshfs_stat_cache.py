#!/usr/bin/env python3
"""Issue 30 probe: is a stat through sshfs's attribute cache as fresh as the listing before it?
Shows that it is not: once a file's attributes are cached, a later fresh READDIR does not
replace them, so a refresh would see the old size until dcache_stat_timeout passes; an open
(as DirBacking::stat_fresh does) does fetch fresh attributes."""
import os, sys, time, subprocess
sys.dont_write_bytecode = True  # no __pycache__ in scripts/
import bench_day as b  # noqa: E402
work = "/var/tmp/rx30/fr"; os.makedirs(work, exist_ok=True)
exp = os.path.join(work, "export"); os.makedirs(exp, exist_ok=True)
open(os.path.join(exp, "a"), "w").write("1")
sshd, port, key = b.start_sshd(work)
m = os.path.join(work, "m"); os.makedirs(m, exist_ok=True)
ssh_opt = f"IdentityFile={key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null"
b.run("sshfs", f"root@127.0.0.1:{exp}", m, "-p", str(port), "-o", ssh_opt, "-o", b.share_cache_opts(5))
try:
    os.listdir(m); print("stat after listing", os.lstat(m + "/a").st_size)
    open(os.path.join(exp, "a"), "w").write("22222")
    print("stat after change (cached?)", os.lstat(m + "/a").st_size)
    with open(m + "/a") as f: print("open+fstat", os.fstat(f.fileno()).st_size)
    print("stat after open", os.lstat(m + "/a").st_size)
    open(os.path.join(exp, "a"), "w").write("333333333")
    print("listing sizes after 2nd change:", os.listdir(m), os.lstat(m + "/a").st_size)
finally:
    subprocess.run(["fusermount3", "-u", m]); sshd.terminate()
