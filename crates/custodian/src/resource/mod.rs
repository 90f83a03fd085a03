//! Every kind of resource that hands out a guard.

mod file;
mod slot;
mod temp;
mod temp_dir;
mod temp_file;

pub use file::{ManagedFile, OpenOptions};
pub use temp::TempBuilder;
pub use temp_dir::TempDir;
pub use temp_file::{PersistError, TempFile};
mod process;
pub use process::{Command, DEFAULT_CHILD_GRACE, ManagedChild};
