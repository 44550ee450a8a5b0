"""One workflow step, written the way the lab's steps write a project.

Usage: workflow_step.py PROJECT STEP
Writes SQLite databases (WAL and rollback journal), a CSV, a spreadsheet-sized binary,
workflow_state.json through a temporary file and os.replace, a step marker in
.workflow_status/, an append to .workflow_logs/run.log, a zip snapshot and a copytree snapshot
in .snapshots/, renames and deletes the previous step's files, makes an empty directory, and
drops files the ignore rules cover (__pycache__, .DS_Store, Thumbs.db, .sync_log.json).
"""
import csv
import json
import os
import random
import shutil
import sqlite3
import sys
import time
import zipfile

proj, step = sys.argv[1], int(sys.argv[2])
os.chdir(proj)
for d in (".workflow_status", ".workflow_logs", ".snapshots", "results"):
    os.makedirs(d, exist_ok=True)
rng = random.Random(step)

db = sqlite3.connect("results/data.db")
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS t(step INTEGER, i INTEGER, v TEXT)")
db.executemany("INSERT INTO t VALUES(?,?,?)", [(step, i, f"row{i}" * 5) for i in range(2000)])
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()

db = sqlite3.connect("results/meta.db")
db.execute("PRAGMA journal_mode=DELETE")
db.execute("CREATE TABLE IF NOT EXISTS steps(step INTEGER PRIMARY KEY, at REAL)")
db.execute("INSERT OR REPLACE INTO steps VALUES(?, ?)", (step, time.time()))
db.commit()
db.close()

with open(f"results/step{step}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["sample", "value"])
    for i in range(500):
        w.writerow([f"s{i}", rng.random()])

with open(f"results/sheet{step}.xlsx", "wb") as f:
    f.write(rng.randbytes(2 * 1024 * 1024))

state = {"step": step, "done": list(range(1, step + 1))}
with open("workflow_state.json.tmp", "w") as f:
    json.dump(state, f)
    f.flush()
    os.fsync(f.fileno())
os.replace("workflow_state.json.tmp", "workflow_state.json")

with open(f".workflow_status/step{step}.done", "w") as f:
    f.write(time.ctime())
with open(".workflow_logs/run.log", "a") as f:
    f.write(f"step {step} finished\n")

with zipfile.ZipFile(f".snapshots/step{step}.zip", "w") as z:
    for name in sorted(os.listdir("results")):
        z.write(os.path.join("results", name))
shutil.copytree(".", f".snapshots/copy{step}", ignore=shutil.ignore_patterns(".snapshots"))

if step > 1:
    os.rename(f"results/step{step - 1}.csv", f"results/old_step{step - 1}.csv")
    os.remove(f"results/sheet{step - 1}.xlsx")
    shutil.rmtree(f".snapshots/copy{step - 1}")
os.makedirs(f"empty{step}", exist_ok=True)

os.makedirs("__pycache__", exist_ok=True)
with open("__pycache__/helper.cpython-311.pyc", "wb") as f:
    f.write(b"\x00" * 100)
for name in (".DS_Store", "Thumbs.db", ".sync_log.json"):
    with open(name, "w") as f:
        f.write("never synced")
print(f"step {step} done")
