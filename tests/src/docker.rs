//! A Docker engine and the tests' image, for the end-to-end tests of the design's main use: a
//! workflow step in a container writing to the project through sipfs.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The image `scripts/docker-test-env` builds without a registry (debootstrap + docker import).
pub const IMAGE: &str = "sipfs-test/python:bookworm";

/// Makes sure Docker runs and the image exists (starting dockerd and building the image if
/// needed). `false`, with the reason printed, only where Docker cannot run at all; any other
/// failure fails the test.
pub fn docker_ready() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("scripts/docker-test-env");
        let out = Command::new(&script)
            .output()
            .expect("running scripts/docker-test-env");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(text),
            _ => panic!("preparing Docker failed:\n{text}"),
        }
    });
    match r {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED: Docker cannot run on this machine:\n{why}");
            false
        }
    }
}
