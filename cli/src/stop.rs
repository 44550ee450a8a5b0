//! Being asked to stop by the operating system: Ctrl-C, SIGTERM and SIGHUP on Unix; on
//! Windows Ctrl-C, Ctrl-Break, closing the console window, logoff and shutdown.
//!
//! A serving sipfs (a mirror, or `sipfs run` around a command) must flush a last time before
//! it goes. Windows ends a process as soon as its console handler returns from a close, logoff
//! or shutdown event, so the handler here does not return until `finished` is called after
//! that flush (or until Windows' own deadline takes the process anyway: what the flush did not
//! write then stays pending in the cache, and the next flush writes it).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicBool = AtomicBool::new(false);

/// True once the operating system asked this process to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The last flush is done: a closing console may take the process now.
pub fn finished() {
    FINISHED.store(true, Ordering::SeqCst);
}

/// Starts listening for stop requests (once per process).
#[cfg(not(windows))]
pub fn install() -> Result<()> {
    ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst))
        .context("installing the stop handler")
}

#[cfg(windows)]
pub fn install() -> Result<()> {
    use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
    // SAFETY: registers a handler with the signature Windows expects; it only touches atomics.
    if unsafe { SetConsoleCtrlHandler(Some(console_event), 1) } == 0 {
        return Err(std::io::Error::last_os_error()).context("installing the stop handler");
    }
    Ok(())
}

#[cfg(windows)]
unsafe extern "system" fn console_event(event: u32) -> windows_sys::core::BOOL {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT};
    REQUESTED.store(true, Ordering::SeqCst);
    if event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT {
        // Close, logoff, shutdown: the process ends when this returns. Wait for the flush.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !FINISHED.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    1
}
