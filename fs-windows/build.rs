//! WinFsp's DLL is not on the PATH (its installer does not put it there): sipfs.exe links it
//! delay-loaded, so that it starts without WinFsp (mirror folders need none) and loads it from
//! WinFsp's install folder when a drive is mounted (see `winfsp_dir`).
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "windows" && env == "msvc" {
        winfsp::build::winfsp_link_delayload();
    }
}
