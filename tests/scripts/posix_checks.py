"""POSIX behaviour that the lab's programs rely on, checked inside a mount.

Usage: posix_checks.py MOUNTPOINT. Exits non-zero with a message on the first failure.
"""
import errno
import mmap
import os
import shutil
import sqlite3
import sys
import zipfile

root = sys.argv[1]
os.chdir(root)


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


# SQLite in both journal modes, with concurrent readers.
for mode in ("WAL", "DELETE"):
    path = f"db_{mode}.sqlite"
    db = sqlite3.connect(path)
    check(db.execute(f"PRAGMA journal_mode={mode}").fetchone()[0].upper() == mode, f"journal mode {mode}")
    db.execute("CREATE TABLE t(x)")
    for i in range(50):
        db.execute("INSERT INTO t VALUES(?)", (i,))
        db.commit()
    reader = sqlite3.connect(path)
    check(reader.execute("SELECT count(*) FROM t").fetchone()[0] == 50, f"{mode} reader")
    check(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"{mode} integrity")
    reader.close()
    db.close()

# os.replace over an existing file, and over itself.
with open("state.json", "w") as f:
    f.write("old")
with open("state.json.tmp", "w") as f:
    f.write("new")
os.replace("state.json.tmp", "state.json")
check(open("state.json").read() == "new" and not os.path.exists("state.json.tmp"), "os.replace")

# copy2 keeps modification times to the nanosecond, and extended attributes.
with open("src.bin", "wb") as f:
    f.write(os.urandom(100_000))
os.utime("src.bin", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
os.setxattr("src.bin", "user.sample", b"S-17")
check(os.listxattr("src.bin") == ["user.sample"], "listxattr")
try:
    os.setxattr("src.bin", "user.sample", b"again", os.XATTR_CREATE)
    check(False, "XATTR_CREATE of an existing attribute")
except OSError as e:
    check(e.errno == errno.EEXIST, f"XATTR_CREATE errno {e.errno}")
shutil.copy2("src.bin", "dst.bin")
check(os.stat("dst.bin").st_mtime_ns == 1_700_000_000_123_456_789, "copy2 mtime")
check(os.getxattr("dst.bin", "user.sample") == b"S-17", "copy2 xattr")
os.removexattr("dst.bin", "user.sample")
try:
    os.getxattr("dst.bin", "user.sample")
    check(False, "a removed attribute")
except OSError as e:
    check(e.errno == errno.ENODATA, f"getxattr errno {e.errno}")
os.makedirs("tree/a/b", exist_ok=True)
with open("tree/a/b/f.txt", "w") as f:
    f.write("x")
shutil.copytree("tree", "tree_copy")
check(open("tree_copy/a/b/f.txt").read() == "x", "copytree")

# zipfile round trip.
with zipfile.ZipFile("snap.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.write("src.bin")
    z.writestr("inner/note.txt", "hello")
with zipfile.ZipFile("snap.zip") as z:
    check(z.read("inner/note.txt") == b"hello" and z.testzip() is None, "zipfile")

# truncate, both ways.
with open("trunc.bin", "wb") as f:
    f.write(b"x" * 1000)
os.truncate("trunc.bin", 10)
check(os.path.getsize("trunc.bin") == 10, "truncate down")
os.truncate("trunc.bin", 5000)
check(open("trunc.bin", "rb").read()[10:] == b"\0" * 4990, "truncate up")

# mmap: write through a mapping, read back through read().
with open("mapped.bin", "wb") as f:
    f.write(b"\0" * 8192)
with open("mapped.bin", "r+b") as f:
    m = mmap.mmap(f.fileno(), 8192)
    m[100:105] = b"hello"
    m.flush()
    m.close()
check(open("mapped.bin", "rb").read()[100:105] == b"hello", "mmap write")

# Unicode names and a deep tree.
for name in ("Übersicht.csv", "データ.txt", "naïve café.json", "emoji 🧪.log"):
    with open(name, "w", encoding="utf-8") as f:
        f.write(name)
    check(open(name, encoding="utf-8").read() == name, f"unicode {name}")
deep = os.path.join(*[f"level{i}" for i in range(40)])
os.makedirs(deep)
with open(os.path.join(deep, "leaf.txt"), "w") as f:
    f.write("leaf")
check(open(os.path.join(deep, "leaf.txt")).read() == "leaf", "deep tree")

# Renames: a directory over an empty one, a file into another directory.
os.makedirs("ren/src/sub")
os.makedirs("ren/dst")
os.rename("ren/src", "ren/dst")
check(os.path.isdir("ren/dst/sub") and not os.path.exists("ren/src"), "rename dir over empty dir")
try:
    os.makedirs("ren/full/x")
    os.makedirs("ren/other")
    os.rename("ren/other", "ren/full")
    check(False, "rename over a non-empty dir must fail")
except OSError as e:
    check(e.errno in (errno.ENOTEMPTY, errno.EEXIST), f"ENOTEMPTY, got {e.errno}")

# fsync, symlinks, hard links.
with open("durable.txt", "w") as f:
    f.write("d")
    f.flush()
    os.fsync(f.fileno())
os.symlink("durable.txt", "link.txt")
check(os.readlink("link.txt") == "durable.txt" and open("link.txt").read() == "d", "symlink")
os.link("durable.txt", "hard.txt")
check(os.stat("hard.txt").st_ino == os.stat("durable.txt").st_ino, "one inode for both names")
check(os.stat("hard.txt").st_nlink == 2, "link count")
check(open("hard.txt").read() == "d", "hard link content")
os.unlink("hard.txt")
check(os.stat("durable.txt").st_nlink == 1, "link count after unlink")

# Modes.
os.chmod("durable.txt", 0o600)
check(os.stat("durable.txt").st_mode & 0o777 == 0o600, "chmod")

# Appends from two handles.
with open("log.txt", "a") as a, open("log.txt", "a") as b:
    a.write("one\n")
    a.flush()
    b.write("two\n")
check(open("log.txt").read() == "one\ntwo\n", "appends")
print("posix checks passed")
