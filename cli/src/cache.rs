//! Opening the engine for a share, the same way for every form that serves it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fs_core::{DirBacking, Engine, EngineOptions, FsError, JournalError};
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

/// How `sipfs mount` was asked to set the engine up; `sipfs run` takes the defaults.
pub fn setup_of(args: &MountArgs) -> (usize, Vec<String>) {
    (args.parallel, args.ignore.clone())
}

/// The engine for a mount or drive of `backing`, its cache in `cache`: `parallel` share
/// operations at once, `ignore` rules on top of the defaults.
pub fn open_engine(
    backing: &Path,
    cache: &Path,
    (parallel, ignore): (usize, Vec<String>),
    windows_share: bool,
) -> Result<Arc<Engine>> {
    let mut opts = EngineOptions::new(cache, backing.display().to_string());
    opts.parallelism = parallel.max(1);
    opts.idle_checkpoints = true;
    opts.extra_ignore = ignore;
    opts.windows_share = windows_share;
    if opts.windows_share {
        info!("the share follows Windows rules: names are checked before they are written");
    }
    let engine = match Engine::open(Arc::new(DirBacking::new(backing)), opts) {
        Ok(e) => Arc::new(e),
        Err(FsError::Journal(JournalError::InUse(dir))) => bail!(
            "the cache {} is in use by another sipfs mount of the same share; unmount that one first, or pass --cache",
            dir.display()
        ),
        Err(e) => return Err(e).context(format!("opening the cache {}", cache.display())),
    };
    info!(share = %backing.display(), cache = %cache.display(), "cache ready");
    Ok(engine)
}
