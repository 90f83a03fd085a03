//! Where this process's cgroup v2 directory is: the cgroup2 mount from
//! `/proc/self/mountinfo` and the process's own cgroup from `/proc/self/cgroup` (its
//! `0::` line). No path is assumed: the mount is `/sys/fs/cgroup` on most hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones, and anywhere in a container.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// A visible cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted.
    pub(crate) point: PathBuf,
    /// The cgroup shown at the mount point (`/` unless a cgroup namespace or a bind
    /// mount of a subtree).
    pub(crate) root: PathBuf,
    /// Mounted read-only (this mount or its super block).
    pub(crate) read_only: bool,
    /// Mounted with `nsdelegate`: cgroup namespaces are delegation boundaries.
    pub(crate) nsdelegate: bool,
}

/// The cgroup2 mount that `mountinfo` shows, if one is visible: the last cgroup2 line
/// whose mount point no later mount covers (a later mount on the same point, of any
/// type, hides it).
#[cfg(test)]
pub(crate) fn find_mount(mountinfo: &str) -> Option<Mount> {
    visible_mounts(mountinfo).into_iter().next()
}

/// Every visible cgroup2 mount, the last listed first: those whose mount point no later
/// mount covers (a later mount on the same point, of any type, hides it). Several show
/// different subtrees (a bind mount of one cgroup, a namespace's own mount): the caller
/// takes one that shows its cgroup ([`choose`]).
pub(crate) fn visible_mounts(mountinfo: &str) -> Vec<Mount> {
    let lines: Vec<Vec<&str>> = mountinfo.lines().map(|l| l.split(' ').collect()).collect();
    let mut found = Vec::new();
    for (i, f) in lines.iter().enumerate().rev() {
        // id parent maj:min root point options [optional...] - type source super
        let Some(dash) = f.iter().position(|&x| x == "-") else {
            continue;
        };
        if f.len() < dash + 4 || dash < 6 || f[dash + 1] != "cgroup2" {
            continue;
        }
        let point = unescape(f[4]);
        let covered = lines[i + 1..]
            .iter()
            .any(|g| g.len() > 4 && unescape(g[4]) == point);
        if covered {
            continue;
        }
        let has = |opts: &str, want: &str| opts.split(',').any(|o| o == want);
        found.push(Mount {
            point,
            root: unescape(f[3]),
            read_only: has(f[5], "ro") || has(f[dash + 3], "ro"),
            nsdelegate: has(f[dash + 3], "nsdelegate"),
        });
    }
    found
}

/// The mount to use for `cgroup` among `mounts` ([`visible_mounts`]) and the cgroup's
/// directory under it: the first that shows it, a writable one before a read-only one.
/// `None` if none shows it.
pub(crate) fn choose<'m>(mounts: &'m [Mount], cgroup: &Path) -> Option<(&'m Mount, PathBuf)> {
    let showing = || mounts.iter().filter_map(|m| Some((m, dir_of(m, cgroup)?)));
    showing()
        .find(|(m, _)| !m.read_only)
        .or_else(|| showing().next())
}

/// This process's cgroup v2 path (the `0::` line of `/proc/self/cgroup`), if it has one.
pub(crate) fn own_cgroup(proc_cgroup: &str) -> Option<PathBuf> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_end()))
}

/// The directory of `cgroup` under `mount`, if the mount shows it (the cgroup is at or
/// below the mount's root, and has no `..`).
pub(crate) fn dir_of(mount: &Mount, cgroup: &Path) -> Option<PathBuf> {
    if !cgroup.is_absolute() || cgroup.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let rel = cgroup.strip_prefix(&mount.root).ok()?;
    // `join("")` would add a trailing slash.
    Some(if rel.as_os_str().is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(rel)
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn finds_the_hybrid_mount_and_its_options() {
        let m = find_mount(HYBRID).unwrap();
        assert_eq!(m.point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, Path::new("/"));
        assert!(m.nsdelegate && !m.read_only);
        assert_eq!(
            dir_of(&m, Path::new("/")).unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            dir_of(&m, Path::new("/a/b")).unwrap(),
            Path::new("/sys/fs/cgroup/unified/a/b")
        );
    }

    #[test]
    fn a_read_only_bind_mount_on_top_is_the_one_seen() {
        let ro = format!(
            "{HYBRID}90 41 0:38 / /sys/fs/cgroup/unified ro,relatime - cgroup2 cgroup2 rw\n"
        );
        assert!(find_mount(&ro).unwrap().read_only);
        let hidden = format!("{HYBRID}91 41 0:50 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw\n");
        assert_eq!(find_mount(&hidden), None, "a tmpfs over it hides it");
        assert_eq!(find_mount("31 23 0:28 / /x rw - tmpfs tmpfs rw\n"), None);
    }

    #[test]
    fn escapes_and_namespaced_roots() {
        let m = find_mount("1 0 0:1 /ns\\040a /c\\134g rw - cgroup2 none rw\n").unwrap();
        assert_eq!(m.point, Path::new("/c\\g"));
        assert_eq!(m.root, Path::new("/ns a"));
        assert_eq!(
            dir_of(&m, Path::new("/ns a/x")).unwrap(),
            Path::new("/c\\g/x")
        );
        assert_eq!(
            dir_of(&m, Path::new("/other")),
            None,
            "outside the mount's root"
        );
        assert_eq!(dir_of(&m, Path::new("/ns a/../x")), None);
    }

    #[test]
    fn a_later_bind_mount_of_another_subtree_does_not_hide_the_mount() {
        let text = format!(
            "{HYBRID}92 41 0:38 /other /mnt/view rw - cgroup2 cgroup2 rw\n\
             93 41 0:38 / /mnt/ro ro - cgroup2 cgroup2 rw\n"
        );
        let mounts = visible_mounts(&text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            mounts[0].point,
            Path::new("/mnt/ro"),
            "the last listed first"
        );
        let (m, dir) = choose(&mounts, Path::new("/a/b")).unwrap();
        assert_eq!(
            m.point,
            Path::new("/sys/fs/cgroup/unified"),
            "writable first"
        );
        assert_eq!(dir, Path::new("/sys/fs/cgroup/unified/a/b"));
        let (m, dir) = choose(&mounts, Path::new("/other/x")).unwrap();
        assert_eq!(m.point, Path::new("/mnt/view"));
        assert_eq!(dir, Path::new("/mnt/view/x"));
        let ro_only = format!("{HYBRID}94 41 0:38 / /sys/fs/cgroup/unified ro - cgroup2 c rw\n");
        let mounts = visible_mounts(&ro_only);
        assert!(choose(&mounts, Path::new("/a")).unwrap().0.read_only);
        let view = "92 41 0:38 /other /mnt/view rw - cgroup2 cgroup2 rw\n";
        assert_eq!(choose(&visible_mounts(view), Path::new("/a")), None);
    }

    #[test]
    fn own_cgroup_is_the_unified_line() {
        let text = "4:memory:/m\n0::/user.slice/x.scope\n";
        assert_eq!(own_cgroup(text).unwrap(), Path::new("/user.slice/x.scope"));
        assert_eq!(own_cgroup("4:memory:/m\n"), None, "v1 only");
    }
}
