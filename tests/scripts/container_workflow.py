#!/usr/bin/env python3
"""Three workflow steps as the lab's workflow manager runs them in its container.

Runs inside the container with the project at /data and a handshake folder at /sync (outside
the project), through which the test checks the share between the steps. Each step writes what
real steps write: a SQLite database, a CSV, workflow_state.json through a temporary file and a
rename, a marker in .workflow_status/, an append to a log in .workflow_logs/, and a zip
snapshot of the project in .snapshots/. It then signals "done, not flushed" (the test checks
that the share has none of it), and on the go-ahead ends with exactly what the workflow
manager's step runner does:

    echo "flush step-N" > /data/.sipfs/control

followed by waiting until the control file no longer holds the request (at once on a mount,
where the write itself returns when the flush is done and the file cannot be read; in a mirror
folder when the serving sipfs has replaced it with its answer, which must say ok).
Usage: container_workflow.py STEPS
"""

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile

DATA = "/data"
SYNC = "/sync"


def wait_for(name, timeout=300):
    path = os.path.join(SYNC, name)
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {name}")
        time.sleep(0.05)


def signal(name):
    with open(os.path.join(SYNC, name), "w") as f:
        f.write("1")


def run_step(n):
    os.makedirs(os.path.join(DATA, "results"), exist_ok=True)
    db = sqlite3.connect(os.path.join(DATA, "results", "measurements.sqlite"))
    db.execute("CREATE TABLE IF NOT EXISTS m(step INTEGER, sample TEXT, value REAL)")
    db.executemany(
        "INSERT INTO m VALUES(?, ?, ?)",
        [(n, f"s{i}", i * n * 0.5) for i in range(50)],
    )
    db.commit()
    db.close()

    with open(os.path.join(DATA, "results", f"step-{n}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample", "value"])
        for i in range(20):
            w.writerow([f"s{i}", i * n])

    state_path = os.path.join(DATA, "workflow_state.json")
    state = {"steps_done": []}
    if os.path.exists(state_path):
        with open(state_path) as f:
            state = json.load(f)
    state["steps_done"].append(n)
    state["current"] = n
    tmp = state_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, state_path)

    os.makedirs(os.path.join(DATA, ".workflow_status"), exist_ok=True)
    with open(os.path.join(DATA, ".workflow_status", f"step-{n}.done"), "w") as f:
        f.write(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    os.makedirs(os.path.join(DATA, ".workflow_logs"), exist_ok=True)
    with open(os.path.join(DATA, ".workflow_logs", "workflow.log"), "a") as f:
        f.write(f"step {n}: done\n")

    os.makedirs(os.path.join(DATA, ".snapshots"), exist_ok=True)
    snap = os.path.join(DATA, ".snapshots", f"step-{n}.zip")
    with zipfile.ZipFile(snap + ".part", "w") as z:
        for root, dirs, files in os.walk(DATA):
            rel_root = os.path.relpath(root, DATA)
            dirs[:] = [d for d in dirs if not (rel_root == "." and d in (".snapshots", ".sipfs"))]
            for name in files:
                full = os.path.join(root, name)
                z.write(full, os.path.relpath(full, DATA))
    os.replace(snap + ".part", snap)


def flush(n):
    # Exactly the step runner's line, through a shell as it runs it.
    subprocess.run(
        ["sh", "-c", f'echo "flush step-{n}" > {DATA}/.sipfs/control'], check=True
    )
    control = os.path.join(DATA, ".sipfs", "control")
    deadline = time.time() + 300
    while True:
        try:
            with open(control) as f:
                answer = f.read()
        except OSError:
            # A mount's control file cannot be read: the write itself was the answer.
            answer = ""
        if answer.strip() != f"flush step-{n}":
            break
        if time.time() > deadline:
            sys.exit(f"step {n}: the flush request was not answered")
        time.sleep(0.1)
    if answer and not answer.startswith(f"ok flush step-{n}"):
        sys.exit(f"step {n}: the flush answered {answer!r}")


def main():
    steps = int(sys.argv[1])
    for n in range(1, steps + 1):
        run_step(n)
        signal(f"ready-{n}")
        wait_for(f"go-{n}")
        flush(n)
        signal(f"flushed-{n}")
        wait_for(f"next-{n}")
    print(f"{steps} steps done")


if __name__ == "__main__":
    main()
