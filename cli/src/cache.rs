//! Opening the engine for a share, the same way for every form that serves it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fs_core::{Engine, EngineOptions, FsError, JournalError};
use tracing::info;

use crate::MountArgs;

/// The share folder, checked and in its plain form.
pub fn check_backing(p: &Path) -> Result<PathBuf> {
    let md = fs::metadata(p).with_context(|| {
        format!(
            "the share folder {} cannot be reached (is the share mounted?)",
            p.display()
        )
    })?;
    if !md.is_dir() {
        bail!("the share folder {} is not a directory", p.display());
    }
    dunce::canonicalize(p).with_context(|| format!("resolving {}", p.display()))
}

/// How the engine was asked to be set up.
pub struct EngineSetup {
    /// Share operations at once.
    pub parallel: usize,
    /// Rules on top of the defaults.
    pub ignore: Vec<String>,
    /// Seconds a share call may go unanswered; 0: no deadline.
    pub share_timeout: u64,
    /// `--cache-max-size`, in bytes.
    pub cache_max_bytes: Option<u64>,
}

/// What `sipfs run` and one-shot commands use.
impl Default for EngineSetup {
    fn default() -> Self {
        EngineSetup {
            parallel: 8,
            ignore: Vec::new(),
            share_timeout: crate::share::DEFAULT_TIMEOUT_SECS,
            cache_max_bytes: None,
        }
    }
}

/// How `sipfs mount` was asked to set the engine up.
pub fn setup_of(args: &MountArgs) -> EngineSetup {
    EngineSetup {
        parallel: args.parallel,
        ignore: args.ignore.clone(),
        share_timeout: args.share_timeout,
        cache_max_bytes: args.cache_max_size.map(|s| s.as_u64()),
    }
}

/// The engine for a mount or drive of `backing`, its cache in `cache`.
pub fn open_engine(
    backing: &Path,
    cache: &Path,
    setup: EngineSetup,
    windows_share: bool,
) -> Result<Arc<Engine>> {
    let EngineSetup {
        parallel,
        ignore,
        share_timeout,
        cache_max_bytes,
    } = setup;
    let mut opts = EngineOptions::new(cache, backing.display().to_string());
    opts.parallelism = parallel.max(1);
    opts.idle_checkpoints = true;
    opts.cache_max_bytes = cache_max_bytes;
    opts.extra_ignore = ignore;
    opts.windows_share = windows_share;
    if opts.windows_share {
        info!("the share follows Windows rules: names are checked before they are written");
    }
    let engine = match Engine::open(crate::share::share_at(backing, share_timeout), opts) {
        Ok(e) => Arc::new(e),
        Err(FsError::Journal(JournalError::InUse(dir))) => bail!(
            "the cache {} is in use by another sipfs mount of the same share; unmount that one first, or pass --cache",
            dir.display()
        ),
        Err(e) => return Err(e).context(format!("opening the cache {}", cache.display())),
    };
    // Big files opened for reading are fetched in ranges; the rest of each comes in here.
    engine.start_background_fill();
    info!(share = %backing.display(), cache = %cache.display(), "cache ready");
    Ok(engine)
}
