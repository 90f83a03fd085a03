//! Managed child processes: a command builder, a guard, and the registry entry that can
//! stop and reap a child without its guard.
//!
//! How a child is released (every path: close, drop, scope end, cancellation, shutdown):
//!
//! 1. SIGTERM to its process group (every child is started with `process_group(0)`) and,
//!    through its pidfd, to the child itself in case it left the group; the group gets
//!    it even if the child has already exited (a zombie still holds the group's id);
//! 2. up to the grace period for the child to exit, observed without reaping it (the
//!    pidfd turns readable; `waitid(WEXITED | WNOWAIT)` confirms), and for its group to
//!    empty (scanned in `/proc`: no event tells it, and `kill(-pgid, 0)` counts the
//!    zombie leader; children released together share one pass, `core/census.rs`);
//!    the grace ends at once when shutdown stops waiting (`Inner::cut`: forced, or the
//!    builder's grace deadline);
//! 3. SIGKILL to the group and the child, and a wait for the child's exit;
//! 4. with the child a zombie, SIGKILL to the group once more, which catches processes
//!    forked while the earlier signals were in flight;
//! 5. the reap.
//!
//! Why this order: a process-group id is the pid of its leader. While the leader exists
//! (alive or a zombie) the kernel gives its pid to no other process, and no other process
//! can create a group with that id, so `kill(-pgid)` reaches only our child's group.
//! Once the leader is reaped, both may be reused; so every group signal, including the
//! final sweep, happens before the reap, under the same lock that the reap takes, and
//! nothing is signalled after it. Signals to the child go through a pidfd (Linux 5.3+),
//! which never names another process; without one, `kill(pid)` is equally safe because
//! it too is sent only while the child is unreaped. Likewise `waitid` goes through the
//! pidfd (`P_PIDFD`, Linux 5.4+) or, where that fails, the pid (`P_PID`).
//!
//! A drop does step 1 inline and hands steps 2-5 to a task that the owning scope and the
//! supervisor track (`Cleanup::Async`), so a scope does not return before its children
//! are reaped. Emergency release without a runtime (`Reclaim::reclaim_now`) sends SIGKILL
//! and waits at most 200 ms for the exit before sweeping and reaping.
//!
//! Children with the parent-death signal are forked by one thread that never exits, not
//! even when a spawn panics (`spawner.rs`): its exit would SIGKILL all of them.
//!
//! Not guaranteed: descendants that leave the group (`setsid`, `setpgid`, daemons) are
//! not found, unless the child-subreaper opt-in adopts them once orphaned (`escapees.rs`,
//! `crate::reaper`); the parent-death signal reaches the direct child only.

mod cgroup;
mod child;
mod command;
mod core;
mod entry;
mod escapees;
mod output;
mod reclaim;
mod spawner;

pub use child::ManagedChild;
pub use command::{Command, DEFAULT_CHILD_GRACE};
pub use output::BoundedOutput;
