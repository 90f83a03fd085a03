//! Every kind of resource that hands out a guard.

mod atomic;
mod file;
mod lock;
mod persist;
mod process;
mod retry;
mod slot;
mod temp;
mod temp_dir;
mod temp_file;

pub use atomic::{ATOMIC_TEMP_PREFIX, AtomicFile, AtomicWrite, CreateAtomicFile, Durability};
pub use file::{ManagedFile, OpenFile, OpenOptions};
pub use lock::{AcquireLock, FileLock, LockMode, LockOptions};
pub use persist::PersistError;
pub use process::{BoundedOutput, Command, DEFAULT_CHILD_GRACE, ManagedChild};
pub use retry::{GaveUp, Retry, RetryError};
pub use temp::{CreateTempDir, CreateTempFile, TempBuilder};
pub use temp_dir::TempDir;
pub use temp_file::TempFile;
