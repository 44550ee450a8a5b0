//! SQLite with a rollback journal through a mount (issue 31): what each transaction costs in
//! kernel requests, counted (never timed), and that the database it leaves is whole.
//!
//! Per transaction SQLite creates `-journal`, writes and fsyncs it, fsyncs the folder,
//! rewrites the journal's header and fsyncs it again, writes and fsyncs the database and
//! deletes the journal. On kernel 6.18 that is 17 requests (docs/PERFORMANCE.md, "The
//! journal's cost per change (issue 31)"): the counts below are those, as upper bounds where
//! the kernel decides (attribute refreshes and the capability lookups that follow them) and
//! exactly where the program does (its syncs, the create and the delete).
#![cfg(target_os = "linux")]

use std::fs;
use std::process::Command;

use sipfs_tests::*;

const TRANSACTIONS: u64 = 20;

/// Runs `TRANSACTIONS` transactions of 50 inserts in rollback-journal mode and prints the
/// mount's kernel requests made during them (from `.sipfs/status`) as JSON.
const PROGRAM: &str = r#"
import json, os, sqlite3, sys
mnt, n = sys.argv[1], int(sys.argv[2])
def requests():
    return json.load(open(os.path.join(mnt, ".sipfs/status")))["kernel_requests"]
db = sqlite3.connect(os.path.join(mnt, "runs.sqlite"))
db.execute("PRAGMA journal_mode=delete")
db.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, step TEXT, value REAL)")
with db:
    db.execute("INSERT INTO r(step, value) VALUES('warm-up', 0)")
before = requests()
for tx in range(n):
    with db:
        db.executemany("INSERT INTO r(step, value) VALUES(?, ?)",
                       ((f"step-{tx}", i * 0.5) for i in range(50)))
after = requests()
db.close()
print(json.dumps({k: after[k] - before[k] for k in after}))
"#;

#[test]
fn a_rollback_journal_transaction_costs_the_requests_it_needs() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    let out = run_ok(
        Command::new("python3")
            .args(["-c", PROGRAM])
            .arg(&m.mnt)
            .arg(TRANSACTIONS.to_string()),
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_tx = |kind: &str| made[kind].as_u64().unwrap();
    let n = TRANSACTIONS;
    // The program's own requests: one `-journal` made and removed, three file syncs and one
    // folder sync per transaction. A sync that sipfs answered "not supported" would be asked
    // once and never again (and would keep no promise): the count shows each reached it.
    assert_eq!(per_tx("create"), n, "{made}");
    assert_eq!(per_tx("unlink"), n, "{made}");
    assert_eq!(per_tx("fsync"), 4 * n, "{made}");
    // The kernel's: it refreshes the database's attributes once per transaction (its size and
    // mtime are stale after a passthrough write) and asks `security.capability` before the
    // first write after a refresh, before the new journal's first write, and for the owner
    // change SQLite makes as root. More would be round trips sipfs's replies caused: an
    // attribute timeout too short, or attributes that change when nothing changed.
    assert!(per_tx("getattr") <= 3 * n, "{made}");
    assert!(per_tx("xattr") <= 3 * n, "{made}");
    assert!(per_tx("lookup") <= n, "{made}");
    let total: u64 = made
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    // (Plus the reading of `.sipfs/status` itself: its open, read and release, some five.)
    assert!(
        total <= 17 * n + 8,
        "{total} requests for {n} transactions: {made}"
    );
    assert!(m.stop().success());

    // What the transactions wrote is whole after the unmount, and no journal is left.
    assert!(!s.share.join("runs.sqlite-journal").exists());
    let count = run_ok(Command::new("python3").args([
        "-c",
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); \
         print(db.execute('PRAGMA integrity_check').fetchone()[0], \
               db.execute('SELECT count(*) FROM r').fetchone()[0])",
        s.share.join("runs.sqlite").to_str().unwrap(),
    ]));
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        format!("ok {}", 1 + 50 * n)
    );
    fs::remove_file(s.share.join("runs.sqlite")).unwrap();
}
