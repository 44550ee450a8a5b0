//! sipfs-core: the platform-neutral write-back cache engine of sipfs.
//!
//! An [`Engine`] sits between a *backing* folder (the project on a network share) and a
//! *cache* folder on local disk. Adapters (FUSE on Linux and macOS, WinFsp on Windows, the
//! mirror folder) call it; it never sees their types. Reads and writes are served from the
//! cache; every change is recorded in a crash-safe [`journal`] before the call returns;
//! [`Engine::flush`] writes exactly the pending changes to the share, and
//! [`Engine::refresh`] pulls in what others changed there. See `docs/ARCHITECTURE.md`.

mod adopt;
pub mod auto_retry;
pub mod backing;
mod cache_tree;
pub mod control;
pub mod crash;
pub mod deadline;
mod engine;
pub mod error;
mod evict;
pub mod fanout;
pub mod fault;
mod flush;
pub mod ignore_rules;
pub mod journal;
pub mod mirror;
pub mod names;
pub mod noreplace;
pub mod nt;
pub mod os_names;
pub mod pending;
mod prefetch;
pub mod ranges;
mod refresh;
pub mod relpath;
pub mod report;
pub mod retry;
#[cfg(unix)]
pub mod sftp;
mod status;
pub mod sys;
pub mod tree;
pub mod volume;
#[cfg(windows)]
mod win_share;

pub use adopt::KnownEntry;
pub use backing::{Backing, DirBacking, EntryKind, Stat};
pub use control::{ControlCommand, ControlOutcome};
pub use deadline::DeadlineBacking;
pub use engine::{
    Attr, DirEntry, Engine, EngineOptions, FileHandle, LocalChanges, SetAttr, XattrMode,
};
pub use error::{FsError, JournalError, Reason};
pub use evict::Eviction;
pub use mirror::{Mirror, MirrorError, SyncReport};
pub use relpath::RelPath;
pub use report::{
    ConflictItem, FetchingItem, FlushReport, Invalidation, KeptLocalItem, PendingItem, Progress,
    RefreshReport, Status,
};
pub use retry::RetryPolicy;
pub use tree::{Ino, ROOT_INO};
