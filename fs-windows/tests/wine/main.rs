//! The drive's callbacks, run under Wine (or on Windows) through WinFsp's own DLL, driven as
//! WinFsp's dispatcher drives them (`dispatcher`), over a real engine, cache and share folder.
//! Each module ports WinFsp's own tests (tst/winfsp-tests) that concern a file system like
//! this one; each case also checks the share after a flush.
//!
//! Built for x86_64-pc-windows-gnu (feature `gnu-drive`) and run under Wine by
//! `scripts/test-wine-drive` (scripts/test runs it); on Windows, msvc, by the Windows workflow.
#![cfg(all(windows, any(target_env = "msvc", feature = "gnu-drive")))]

mod dispatcher;
mod harness;
mod listing;
mod winfsp_create;
mod winfsp_dirctl;
mod winfsp_info;
mod winfsp_rdwr;
