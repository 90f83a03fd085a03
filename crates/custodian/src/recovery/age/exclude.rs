//! The age sweep's exclusions: glob patterns (`globset`) matched against an entry's name
//! at any depth, or, for a pattern with a `/`, against its path relative to the base.
//!
//! Path patterns are taken as people write them: a trailing `/` (a directory) and a
//! leading `./` are dropped, and one with a leading `/` matches either from the base or
//! as an absolute path (`systemd-tmpfiles` style: `/tmp/keep` with the base `/tmp`).
//! An exclusion that silently matched nothing would let the sweep remove what it names.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The exclusion patterns, compiled: names (no `/`), paths relative to the base, and
/// absolute paths.
#[derive(Debug)]
pub(crate) struct Excludes {
    names: GlobSet,
    name_patterns: Vec<String>,
    paths: GlobSet,
    path_patterns: Vec<String>,
    absolute: GlobSet,
    absolute_patterns: Vec<String>,
    /// The base as an absolute path, for the absolute patterns.
    base: PathBuf,
}

impl Excludes {
    pub(crate) fn new<'a>(
        patterns: impl Iterator<Item = &'a str>,
        base: &Path,
    ) -> io::Result<Self> {
        let (mut names, mut paths, mut absolute) = (
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
        );
        let (mut name_patterns, mut path_patterns, mut absolute_patterns) =
            (Vec::new(), Vec::new(), Vec::new());
        let bad = |p: &str, e: globset::Error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid exclusion pattern {p:?}: {e}"),
            )
        };
        let path_glob = |g: &str| GlobBuilder::new(g).literal_separator(true).build();
        for p in patterns {
            // A `/` anywhere makes it a path (a leading one anchors it).
            if p.contains('/') {
                let trimmed = p.trim_end_matches('/');
                let relative = trimmed.trim_start_matches('/');
                let relative = relative.strip_prefix("./").unwrap_or(relative);
                paths.add(path_glob(relative).map_err(|e| bad(p, e))?);
                path_patterns.push(p.to_owned());
                if trimmed.starts_with('/') {
                    absolute.add(path_glob(trimmed).map_err(|e| bad(p, e))?);
                    absolute_patterns.push(p.to_owned());
                }
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
            absolute: build(absolute)?,
            absolute_patterns,
            base: base.to_path_buf(),
        })
    }

    /// The first pattern matching `name` or `rel` (the path relative to the base).
    pub(crate) fn matching(&self, name: &OsString, rel: &Path) -> Option<String> {
        let first = |set: &GlobSet, pats: &[String], what: &Path| {
            set.matches(what).first().map(|&i| pats[i].clone())
        };
        first(&self.names, &self.name_patterns, Path::new(name))
            .or_else(|| first(&self.paths, &self.path_patterns, rel))
            .or_else(|| {
                (!self.absolute.is_empty()).then(|| {
                    first(
                        &self.absolute,
                        &self.absolute_patterns,
                        &self.base.join(rel),
                    )
                })?
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_match_at_any_depth_and_path_patterns_from_the_base() {
        let ex = Excludes::new(
            ["*.pid", "/top/keep-*", "a/*/c"].into_iter(),
            Path::new("/b"),
        )
        .unwrap();
        let m = |name: &str, rel: &str| ex.matching(&OsString::from(name), Path::new(rel));
        assert_eq!(m("x.pid", "deep/down/x.pid").as_deref(), Some("*.pid"));
        assert_eq!(m("keep-1", "top/keep-1").as_deref(), Some("/top/keep-*"));
        assert_eq!(m("keep-1", "other/top/keep-1"), None);
        assert_eq!(m("c", "a/b/c").as_deref(), Some("a/*/c"));
        // `*` does not cross a `/` in a path pattern.
        assert_eq!(m("c", "a/b/b/c"), None);
        assert!(Excludes::new(["[unclosed"].into_iter(), Path::new("/b")).is_err());
    }

    #[test]
    fn path_patterns_are_taken_as_people_write_them() {
        let pats = ["dir/", "./other", "/b/abs/*", "/b/tail/", "/rel"];
        let ex = Excludes::new(pats.into_iter(), Path::new("/b")).unwrap();
        let m = |rel: &str| ex.matching(&OsString::from("x"), Path::new(rel));
        assert_eq!(m("dir").as_deref(), Some("dir/"));
        assert_eq!(m("other").as_deref(), Some("./other"));
        assert_eq!(m("abs/x").as_deref(), Some("/b/abs/*"));
        assert_eq!(m("tail").as_deref(), Some("/b/tail/"));
        assert_eq!(m("rel").as_deref(), Some("/rel"));
        assert_eq!(m("sub/dir"), None);
        assert_eq!(m("abs/x/y"), None);
    }
}
