//! WinFsp's DLL is not on the PATH (its installer does not put it there): the drive's code links
//! it delay-loaded, so that an exe starts without WinFsp (mirror folders need none) and loads it
//! from WinFsp's install folder when a drive is mounted (see `winfsp_dir`).
//!
//! - msvc: winfsp-rs's own helper (`/DELAYLOAD` against the `.lib` winfsp-sys ships).
//! - gnu (the build tested under Wine): `dlltool -y` makes a delay-import library from
//!   `winfsp-x64.def`, and it is passed as a link argument, which comes after every crate on
//!   mingw ld's command line: `rustc-link-lib` would put it before winfsp's rlib, whose
//!   references ld would then not resolve. Link arguments reach only this package's own tests
//!   and binaries, and only with the `gnu-drive` feature: sipfs.exe (gnu) is built without the
//!   drive and imports nothing from WinFsp.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=winfsp-x64.def");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "windows" {
        return;
    }
    if env == "msvc" {
        winfsp::build::winfsp_link_delayload();
        return;
    }
    if std::env::var_os("CARGO_FEATURE_GNU_DRIVE").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let lib = out.join("libwinfsp-x64-delay.a");
    let dlltool = std::env::var("DLLTOOL").unwrap_or_else(|_| "x86_64-w64-mingw32-dlltool".into());
    let st = Command::new(&dlltool)
        .args(["-d", "winfsp-x64.def", "-D", "winfsp-x64.dll", "-y"])
        .arg(&lib)
        .status()
        .unwrap_or_else(|e| panic!("{dlltool} (mingw-w64's binutils) could not run: {e}"));
    assert!(st.success(), "{dlltool} failed on winfsp-x64.def: {st}");
    println!("cargo:rustc-link-arg={}", lib.display());
    // The delay-load helper the library calls (__delayLoadHelper2, in mingw's runtime) and the
    // kernel32 imports the helper needs: named again after the library, as ld takes from an
    // archive only what was asked for before it.
    println!("cargo:rustc-link-arg=-lmingwex");
    println!("cargo:rustc-link-arg=-lkernel32");
}
