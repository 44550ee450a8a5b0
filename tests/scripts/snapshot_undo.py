#!/usr/bin/env python3
"""What a workflow manager does to a project folder around a step (issue 30): a snapshot zips
the whole folder, `.sipfs/` included, and writes a manifest of what it held; an undo deletes
every file not in the manifest (created after it, `.sipfs/`'s too) and restores the zip over
the folder.

usage: snapshot_undo.py snapshot FOLDER ZIP MANIFEST
       snapshot_undo.py undo FOLDER ZIP MANIFEST [--drop-sipfs]   (also deletes .sipfs/ whole)
"""
import json
import os
import shutil
import sys
import zipfile


def files(root):
    out = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            out.append(os.path.relpath(os.path.join(d, n), root))
    return out


def snapshot(root, zip_path, manifest):
    listed = files(root)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in listed:
            z.write(os.path.join(root, f), f)
    with open(manifest, "w") as m:
        json.dump(listed, m)


def undo(root, zip_path, manifest, drop_sipfs):
    keep = set(json.load(open(manifest)))
    for f in files(root):
        if f not in keep:
            os.remove(os.path.join(root, f))
    if drop_sipfs:
        shutil.rmtree(os.path.join(root, ".sipfs"), ignore_errors=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root)


if __name__ == "__main__":
    cmd, root, zip_path, manifest = sys.argv[1:5]
    if cmd == "snapshot":
        snapshot(root, zip_path, manifest)
    else:
        undo(root, zip_path, manifest, "--drop-sipfs" in sys.argv[5:])
