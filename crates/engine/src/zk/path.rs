//! ZooKeeper path arithmetic. Relative paths (`rel`) are either empty (the
//! root itself) or start with `/`; an absolute path is `root + rel`.

use crate::error::{Error, Result};

/// Checks a path the way the ZooKeeper server does (PathUtils.validatePath).
pub fn validate(path: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::InvalidPath { path: path.to_string(), reason: reason.to_string() });
    if path.is_empty() {
        return bad("empty path");
    }
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad("must not end with '/'");
    }
    for name in path[1..].split('/') {
        if name.is_empty() {
            return bad("empty node name (double '/')");
        }
        if name == "." || name == ".." {
            return bad("relative names '.' and '..' are not allowed");
        }
        if let Some(c) = name.chars().find(|c| invalid_char(*c)) {
            return bad(&format!("character U+{:04X} is not allowed in ZooKeeper paths", c as u32));
        }
    }
    Ok(())
}

fn invalid_char(c: char) -> bool {
    let u = c as u32;
    matches!(u, 0x0000..=0x001f | 0x007f..=0x009f | 0xd800..=0xf8ff | 0xfff0..=0xffff)
}

/// `root + rel`.
pub fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        root.to_string()
    } else if root == "/" {
        rel.to_string()
    } else {
        let mut s = String::with_capacity(root.len() + rel.len());
        s.push_str(root);
        s.push_str(rel);
        s
    }
}

/// The relative path of child `name` under relative path `parent`.
pub fn child(parent: &str, name: &str) -> String {
    let mut s = String::with_capacity(parent.len() + 1 + name.len());
    s.push_str(parent);
    s.push('/');
    s.push_str(name);
    s
}

/// Parent of an absolute or relative path; `None` for `/` and for the empty
/// relative path.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() || path == "/" {
        return None;
    }
    match path.rfind('/')? {
        0 => Some("/"),
        i => Some(&path[..i]),
    }
}

/// Parent of a relative path: `"/a/b" -> "/a"`, `"/a" -> ""`.
pub fn rel_parent(rel: &str) -> Option<&str> {
    rel.rfind('/').map(|i| &rel[..i])
}

/// Last name of a path.
pub fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Number of names in a relative path (the root has depth 0).
pub fn depth(rel: &str) -> usize {
    rel.bytes().filter(|b| *b == b'/').count()
}

/// True when `inner` is `outer` or lies below it.
pub fn is_within(outer: &str, inner: &str) -> bool {
    if outer == "/" {
        return true;
    }
    inner == outer || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
}

/// Two subtrees overlap when one root is within the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

/// The proper ancestors of an absolute path, outermost first, excluding `/`.
pub fn ancestors(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(j) = path[i..].find('/') {
        out.push(&path[..i + j]);
        i += j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_splits() {
        assert_eq!(join("/", ""), "/");
        assert_eq!(join("/", "/a"), "/a");
        assert_eq!(join("/x", ""), "/x");
        assert_eq!(join("/x", "/a/b"), "/x/a/b");
        assert_eq!(child("", "a"), "/a");
        assert_eq!(child("/a", "b c"), "/a/b c");
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(rel_parent("/a/b"), Some("/a"));
        assert_eq!(rel_parent("/a"), Some(""));
        assert_eq!(rel_parent(""), None);
        assert_eq!(name("/a/b"), "b");
        assert_eq!(depth(""), 0);
        assert_eq!(depth("/a/b"), 2);
        assert_eq!(ancestors("/a/b/c"), vec!["/a", "/a/b"]);
        assert!(ancestors("/a").is_empty());
    }

    #[test]
    fn overlap_is_by_whole_names() {
        assert!(is_within("/a", "/a"));
        assert!(is_within("/a", "/a/b"));
        assert!(!is_within("/a", "/ab"));
        assert!(is_within("/", "/anything"));
        assert!(overlaps("/a/b", "/a"));
        assert!(!overlaps("/a/b", "/a/c"));
    }

    #[test]
    fn validation_follows_the_server() {
        assert!(validate("/").is_ok());
        assert!(validate("/a b/ü/日本").is_ok());
        assert!(validate("/.a/..b/a.").is_ok());
        for bad in ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/a/..", "/a\u{1}", "/\u{7f}", "/\u{fff5}"] {
            assert!(validate(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
