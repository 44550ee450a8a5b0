//! Decides whether this build has the FUSE mount: `cfg(sipfs_fuse)`. Linux and the BSDs always
//! have it; macOS only with the `macfuse` feature, because fuser's build script there needs
//! macFUSE's `fuse.pc`, which a Mac without macFUSE installed does not have (mirror mode,
//! sipfs's default on macOS, needs none of it). One cfg, so that the modules and the stand-in
//! API below ask one question rather than repeat the target and feature test.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sipfs_fuse)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let macfuse = std::env::var_os("CARGO_FEATURE_MACFUSE").is_some();
    let unix = family.split(',').any(|f| f == "unix");
    if unix && (os != "macos" || macfuse) {
        println!("cargo::rustc-cfg=sipfs_fuse");
    }
}
