//! Glob patterns over snapshot or source paths, with one rule everywhere (backup excludes,
//! restore includes and excludes, find): a pattern with a `/` matches the whole absolute path,
//! one without matches the entry's name at any depth.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct PathPatterns {
    by_name: GlobSet,
    by_path: GlobSet,
}

impl PathPatterns {
    pub fn new(patterns: &[String]) -> Result<PathPatterns> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.trim_end_matches('/');
            let glob = Glob::new(pattern)
                .map_err(|e| Error::InvalidInput(format!("bad pattern {pattern:?}: {e}")))?;
            if pattern.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidInput(format!("patterns: {e}")))
        };
        Ok(PathPatterns {
            by_name: build(by_name)?,
            by_path: build(by_path)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.by_path.is_empty()
    }

    /// Whether the result depends on where an entry sits, not only on its name.
    pub fn has_path_patterns(&self) -> bool {
        !self.by_path.is_empty()
    }

    pub fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        self.by_name.is_match(OsStr::from_bytes(name))
            || self.by_path.is_match(OsStr::from_bytes(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_at_any_depth_paths_match_whole() {
        let p = PathPatterns::new(&["*.tmp".into(), "/srv/**/cache/".into()]).unwrap();
        assert!(p.matches(b"/a/b/c.tmp", b"c.tmp"));
        assert!(!p.matches(b"/a/b/c.tmpx", b"c.tmpx"));
        assert!(p.matches(b"/srv/app/x/cache", b"cache"));
        assert!(!p.matches(b"/home/cache", b"cache"));
        assert!(p.matches(
            &[b'/', 0xff, b'.', b't', b'm', b'p'],
            &[0xff, b'.', b't', b'm', b'p']
        ));
        assert!(PathPatterns::new(&["[".into()]).is_err());
        assert!(PathPatterns::new(&[]).unwrap().is_empty());
    }
}
