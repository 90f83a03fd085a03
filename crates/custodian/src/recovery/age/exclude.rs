//! The age sweep's exclusions: glob patterns (`globset`) matched against an entry's name
//! at any depth, or, for a pattern with a `/`, against its path relative to the base.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The exclusion patterns, compiled: names (no `/`) and paths relative to the base.
#[derive(Debug)]
pub(crate) struct Excludes {
    names: GlobSet,
    name_patterns: Vec<String>,
    paths: GlobSet,
    path_patterns: Vec<String>,
}

impl Excludes {
    pub(crate) fn new<'a>(patterns: impl Iterator<Item = &'a str>) -> io::Result<Self> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut name_patterns, mut path_patterns) = (Vec::new(), Vec::new());
        let bad = |p: &str, e: globset::Error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid exclusion pattern {p:?}: {e}"),
            )
        };
        for p in patterns {
            // A `/` anywhere makes it a path relative to the base (a leading one anchors it).
            if p.contains('/') {
                let relative = p.trim_start_matches('/');
                let glob = GlobBuilder::new(relative)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| bad(p, e))?;
                paths.add(glob);
                path_patterns.push(p.to_owned());
            } else {
                names.add(Glob::new(p).map_err(|e| bad(p, e))?);
                name_patterns.push(p.to_owned());
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| bad("", e));
        Ok(Excludes {
            names: build(names)?,
            name_patterns,
            paths: build(paths)?,
            path_patterns,
        })
    }

    /// The first pattern matching `name` or `rel` (the path relative to the base).
    pub(crate) fn matching(&self, name: &OsString, rel: &Path) -> Option<String> {
        let first = |set: &GlobSet, pats: &[String], what: &Path| {
            set.matches(what).first().map(|&i| pats[i].clone())
        };
        first(&self.names, &self.name_patterns, Path::new(name))
            .or_else(|| first(&self.paths, &self.path_patterns, rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_match_at_any_depth_and_path_patterns_from_the_base() {
        let ex = Excludes::new(["*.pid", "/top/keep-*", "a/*/c"].into_iter()).unwrap();
        let m = |name: &str, rel: &str| ex.matching(&OsString::from(name), Path::new(rel));
        assert_eq!(m("x.pid", "deep/down/x.pid").as_deref(), Some("*.pid"));
        assert_eq!(m("keep-1", "top/keep-1").as_deref(), Some("/top/keep-*"));
        assert_eq!(m("keep-1", "other/top/keep-1"), None);
        assert_eq!(m("c", "a/b/c").as_deref(), Some("a/*/c"));
        // `*` does not cross a `/` in a path pattern.
        assert_eq!(m("c", "a/b/b/c"), None);
        assert!(Excludes::new(["[unclosed"].into_iter()).is_err());
    }
}
