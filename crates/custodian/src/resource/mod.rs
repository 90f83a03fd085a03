//! Every kind of resource that hands out a guard.

mod file;
mod persist;
mod process;
mod slot;
mod temp;
mod temp_dir;
mod temp_file;

pub use file::{ManagedFile, OpenFile, OpenOptions};
pub use persist::PersistError;
pub use process::{Command, DEFAULT_CHILD_GRACE, ManagedChild};
pub use temp::{CreateTempDir, CreateTempFile, TempBuilder};
pub use temp_dir::TempDir;
pub use temp_file::TempFile;
