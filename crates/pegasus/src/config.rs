//! A byte-exact editor for Pegasus server config files (`config.ini`).
//!
//! Migrating a cluster rewrites `[zookeeper] hosts_list` in every meta
//! server's config, and recovering sets `[meta_server]
//! recover_from_replica_server`. Operators keep comments, alignment and
//! line endings in those files, so an edit replaces only the bytes of one
//! value and leaves every other byte as it was.
//!
//! The parser follows the rules of Pegasus's own loader
//! (`src/utils/configuration.cpp`), so that the value read here is the one
//! the server will read:
//!
//! * lines end at `\n`; a `\r` before it belongs to the line ending and is
//!   kept (CRLF files stay CRLF);
//! * blanks (space, tab) around section names, keys and values are trimmed;
//! * `#` and `;` start a comment anywhere on a line, except when escaped as
//!   `^#` / `^;`, which stand for a literal `#` / `;`;
//! * `[name]` starts a section; a section defined twice is an error;
//! * `key = value` defines a key; the first definition of a key in a section
//!   wins and later ones are ignored;
//! * a line with neither `=` nor `[` defines a key with an empty value
//!   (Pegasus accepts it too); such a key has no value to replace, so
//!   editing it is an error;
//! * a key before any section, an empty key or section name, a `[` line
//!   without `]` or with an `=` are errors naming the line.
//!
//! Values are read as UTF-8, invalid sequences replaced (they are only ever
//! compared with or replaced by the hosts and flags this crate writes); the
//! bytes outside the edited value need not be UTF-8 at all.
//!
//! Nothing here prints; every error names the file and, where there is one,
//! the line.

use std::fs;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong reading, editing or writing a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file (or its backup) could not be read or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// A line Pegasus would refuse to load.
    #[error("{}:{line}: {why}", path.display())]
    Syntax { path: PathBuf, line: usize, why: String },
    /// The same section is defined twice (Pegasus refuses to load the file).
    #[error("{}:{line}: section [{section}] already defined on line {first_line}", path.display())]
    DuplicateSection { path: PathBuf, line: usize, first_line: usize, section: String },
    /// The section to edit is not in the file.
    #[error("{}: no section [{section}]", path.display())]
    MissingSection { path: PathBuf, section: String },
    /// The key to edit is not in its section.
    #[error("{}: no key {key:?} in section [{section}]", path.display())]
    MissingKey { path: PathBuf, section: String, key: String },
    /// The key is present as a bare word without `=`, so it has no value
    /// whose bytes could be replaced.
    #[error("{}:{line}: [{section}] {key:?} has no `=`, so its value cannot be replaced", path.display())]
    KeyWithoutEquals { path: PathBuf, line: usize, section: String, key: String },
    /// A value that, written into the file, would read back differently or
    /// change the meaning of the line.
    #[error("{}: cannot set [{section}] {key:?} to {value:?}: {why}", path.display())]
    BadValue { path: PathBuf, section: String, key: String, value: String, why: &'static str },
    /// A key name that cannot be added as a `key = value` line.
    #[error("{}: cannot add key {key:?} to section [{section}]: {why}", path.display())]
    BadKey { path: PathBuf, section: String, key: String, why: &'static str },
    /// A backup already exists and holds something else: overwriting it
    /// could destroy the only copy of the original config.
    #[error("{}: backup {} already exists with different content", path.display(), backup.display())]
    BackupDiffers { path: PathBuf, backup: PathBuf },
}

/// One `key = value` (or bare `key`) line, as the index of a section.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    /// The value with escapes resolved, trimmed; empty for a bare key.
    value: String,
    /// 1-based line number.
    line: usize,
    /// Byte range of the raw (trimmed, still escaped) value in the file;
    /// `None` for a bare key without `=`.
    span: Option<Range<usize>>,
    /// Whether this is the first definition of the key in its section,
    /// the one Pegasus uses.
    effective: bool,
}

/// One `[section]` and the lines up to the next header.
#[derive(Debug, Clone)]
struct Section {
    name: String,
    /// 1-based line number of the header.
    line: usize,
    /// Byte offset just past the header line's content (before its `\r\n`
    /// or `\n`, if any).
    header_end: usize,
    entries: Vec<Entry>,
}

/// A config file held as its exact bytes plus an index of where each
/// section, key and value is, so that edits touch only a value's bytes.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    bytes: Vec<u8>,
    sections: Vec<Section>,
    /// The line ending new lines get: the file's first one, LF if none.
    eol: &'static [u8],
}

/// The blanks Pegasus trims at the start of keys and values.
fn is_leading_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The blanks Pegasus trims at the end of keys and values (it also drops a
/// stray `\r`).
fn is_trailing_blank(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

/// `range` of `bytes` without leading and trailing blanks.
fn trim(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let (mut start, mut end) = (range.start, range.end);
    while start < end && is_leading_blank(bytes[start]) {
        start += 1;
    }
    while end > start && is_trailing_blank(bytes[end - 1]) {
        end -= 1;
    }
    start..end
}

/// The text of raw bytes with `^#` and `^;` read as `#` and `;`.
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'^' && matches!(raw.get(i + 1), Some(b'#' | b';')) {
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ConfigFile {
    /// Reads and parses the file at `path`; the usual way to get one.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let bytes =
            fs::read(path).map_err(|source| ConfigError::Io { path: path.to_owned(), action: "read", source })?;
        ConfigFile::parse(path, bytes)
    }

    /// Parses `bytes` as the content of `path` (used in errors only), so
    /// content fetched from elsewhere can be checked and edited too.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<ConfigFile, ConfigError> {
        let syntax = |line: usize, why: String| ConfigError::Syntax { path: path.to_owned(), line, why };
        let eol: &'static [u8] = match bytes.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && bytes[i - 1] == b'\r' => b"\r\n",
            _ => b"\n",
        };
        let mut sections: Vec<Section> = Vec::new();
        let mut start = 0;
        let mut lineno = 0;
        while start < bytes.len() {
            lineno += 1;
            let newline = bytes[start..].iter().position(|&b| b == b'\n').map(|i| start + i);
            let next = newline.map_or(bytes.len(), |i| i + 1);
            let mut end = newline.unwrap_or(bytes.len());
            if end > start && bytes[end - 1] == b'\r' {
                end -= 1;
            }
            // Pegasus skips blanks and `\r` at the start of a line; the
            // line proper starts at the first other byte.
            let mut first = start;
            while first < end && matches!(bytes[first], b' ' | b'\t' | b'\r') {
                first += 1;
            }
            // The code ends at the first unescaped comment marker.
            let mut code_end = end;
            for i in first..end {
                if matches!(bytes[i], b'#' | b';') && !(i > first && bytes[i - 1] == b'^') {
                    code_end = i;
                    break;
                }
            }
            let code = trim(&bytes, first..code_end);
            let text = &bytes[code.clone()];
            let line_text = || String::from_utf8_lossy(&bytes[start..end]).into_owned();
            if text.is_empty() {
                // blank or comment-only line
            } else if text[0] == b'[' {
                if text.contains(&b'=') {
                    return Err(syntax(lineno, format!("a section header with `=`: {:?}", line_text())));
                }
                let Some(close) = text.iter().position(|&b| b == b']') else {
                    return Err(syntax(lineno, format!("a section header without `]`: {:?}", line_text())));
                };
                let name_range = trim(&bytes, code.start + 1..code.start + close);
                let name = unescape(&bytes[name_range]);
                if name.is_empty() {
                    return Err(syntax(lineno, "an empty section name".to_owned()));
                }
                if let Some(first) = sections.iter().find(|s| s.name == name) {
                    return Err(ConfigError::DuplicateSection {
                        path: path.to_owned(),
                        line: lineno,
                        first_line: first.line,
                        section: name,
                    });
                }
                sections.push(Section { name, line: lineno, header_end: end, entries: Vec::new() });
            } else {
                let Some(section) = sections.last_mut() else {
                    return Err(syntax(lineno, format!("a key before any [section]: {:?}", line_text())));
                };
                let (key_range, span) = match text.iter().position(|&b| b == b'=') {
                    Some(eq) => {
                        let eq = code.start + eq;
                        let value = trim(&bytes, eq + 1..code_end);
                        (trim(&bytes, code.start..eq), Some(value))
                    }
                    None => (code.clone(), None),
                };
                let key = unescape(&bytes[key_range]);
                if key.is_empty() {
                    return Err(syntax(lineno, format!("a value without a key: {:?}", line_text())));
                }
                let value = span.as_ref().map_or_else(String::new, |r| unescape(&bytes[r.clone()]));
                let effective = !section.entries.iter().any(|e| e.key == key);
                section.entries.push(Entry { key, value, line: lineno, span, effective });
            }
            start = next;
        }
        Ok(ConfigFile { path: path.to_owned(), bytes, sections, eol })
    }

    /// The file the content came from, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The exact bytes as read, e.g. to back them up or compare.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn section(&self, section: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == section)
    }

    fn entry(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section)?.entries.iter().find(|e| e.effective && e.key == key)
    }

    /// The value Pegasus uses for `[section] key` (the first definition),
    /// comment stripped, escapes resolved and trimmed; `None` when absent.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entry(section, key).map(|e| e.value.as_str())
    }

    /// The 1-based line of the definition Pegasus uses, to point an
    /// operator at it.
    pub fn line_of(&self, section: &str, key: &str) -> Option<usize> {
        self.entry(section, key).map(|e| e.line)
    }

    /// Byte range of the effective value in [`bytes`](Self::bytes), as
    /// written (escapes not resolved); `None` when absent or without `=`.
    #[cfg(test)]
    fn value_span(&self, section: &str, key: &str) -> Option<Range<usize>> {
        self.entry(section, key)?.span.clone()
    }

    /// Refuses a value that would not read back as itself, or would change
    /// what the rest of its line means.
    fn check_value(&self, section: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        let why = if value.contains(['\n', '\r']) {
            Some("it contains a line break")
        } else if value.contains(['#', ';']) {
            Some("`#` and `;` start a comment")
        } else if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
            Some("leading and trailing blanks are trimmed when read")
        } else if value.ends_with('^') {
            Some("a trailing `^` would escape a comment marker after it")
        } else {
            None
        };
        match why {
            Some(why) => Err(ConfigError::BadValue {
                path: self.path.clone(),
                section: section.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// The file's bytes with the effective `key`'s value replaced by `value`, every other byte
    /// identical (spacing around `=`, a trailing comment, the line ending kept). Error if the
    /// section or key is missing, the key has no `=`, or the value could not be written as is.
    pub fn with_value(&self, section: &str, key: &str, value: &str) -> Result<Vec<u8>, ConfigError> {
        self.check_value(section, key, value)?;
        let Some(s) = self.section(section) else {
            return Err(ConfigError::MissingSection { path: self.path.clone(), section: section.to_owned() });
        };
        let Some(entry) = s.entries.iter().find(|e| e.effective && e.key == key) else {
            return Err(ConfigError::MissingKey {
                path: self.path.clone(),
                section: section.to_owned(),
                key: key.to_owned(),
            });
        };
        let Some(span) = &entry.span else {
            return Err(ConfigError::KeyWithoutEquals {
                path: self.path.clone(),
                line: entry.line,
                section: section.to_owned(),
                key: key.to_owned(),
            });
        };
        let mut out = Vec::with_capacity(self.bytes.len() + value.len());
        out.extend_from_slice(&self.bytes[..span.start]);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(&self.bytes[span.end..]);
        Ok(out)
    }

    /// Like [`with_value`](Self::with_value), but adds a `key = value` line when the key is
    /// missing: right after the section's last entry (or its header when it has none), so
    /// trailing blank lines and comments, which usually introduce the next section, stay
    /// below it. The line ends as the file's lines do (CRLF if its first line does). Error
    /// if the section is missing.
    pub fn with_value_or_added(&self, section: &str, key: &str, value: &str) -> Result<Vec<u8>, ConfigError> {
        let Some(s) = self.section(section) else {
            return Err(ConfigError::MissingSection { path: self.path.clone(), section: section.to_owned() });
        };
        if s.entries.iter().any(|e| e.key == key) {
            return self.with_value(section, key, value);
        }
        self.check_value(section, key, value)?;
        let bad_key = |why| ConfigError::BadKey {
            path: self.path.clone(),
            section: section.to_owned(),
            key: key.to_owned(),
            why,
        };
        if key.is_empty() {
            return Err(bad_key("it is empty"));
        }
        if key.contains(['\n', '\r', '=', '#', ';']) {
            return Err(bad_key("it contains a line break, `=`, `#` or `;`"));
        }
        if key.starts_with([' ', '\t', '[', '^']) || key.ends_with([' ', '\t']) {
            return Err(bad_key("it starts with a blank, `[` or `^`, or ends with a blank"));
        }
        // The end of the last content line of the section.
        let anchor_line = s.entries.last().map_or(s.line, |e| e.line);
        let anchor_end = match s.entries.last() {
            None => s.header_end,
            Some(_) => self.line_content_end(anchor_line),
        };
        let line = format!("{key} = {value}");
        let mut out = Vec::with_capacity(self.bytes.len() + line.len() + 2);
        match self.bytes[anchor_end..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                // after the anchor's own line ending
                let at = anchor_end + i + 1;
                out.extend_from_slice(&self.bytes[..at]);
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(self.eol);
                out.extend_from_slice(&self.bytes[at..]);
            }
            None => {
                // the last line of a file without a final newline: the
                // added line becomes the last one, still without it
                out.extend_from_slice(&self.bytes);
                out.extend_from_slice(self.eol);
                out.extend_from_slice(line.as_bytes());
            }
        }
        Ok(out)
    }

    /// Byte offset of the end of 1-based line `line`, before its `\n`.
    fn line_content_end(&self, line: usize) -> usize {
        let mut seen = 1;
        for (i, &b) in self.bytes.iter().enumerate() {
            if b == b'\n' {
                if seen == line {
                    return i;
                }
                seen += 1;
            }
        }
        self.bytes.len()
    }
}

/// A fresh name next to `path` for a temporary file, created exclusively.
fn create_temp_beside(path: &Path) -> io::Result<(PathBuf, fs::File)> {
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let pid = std::process::id();
    let mut attempt = 0u32;
    loop {
        let temp = dir.join(format!(".{name}.zkrepl-{pid}-{attempt}.tmp"));
        match fs::OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically, so a crash leaves either the old or
/// the new config and never a torn one: a temp file in the same directory,
/// the same mode and owner as the file it replaces, fsynced, renamed over
/// it, the directory fsynced. A symlink is followed and its target
/// replaced; a missing file is created with the default mode.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_owned(),
    };
    let old = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let (temp, mut file) = create_temp_beside(&target)?;
    let result = (|| {
        file.write_all(bytes)?;
        if let Some(old) = &old {
            let mine = file.metadata()?;
            if mine.uid() != old.uid() || mine.gid() != old.gid() {
                std::os::unix::fs::chown(&temp, Some(old.uid()), Some(old.gid()))?;
            }
            // after chown, which may clear set-id bits
            fs::set_permissions(&temp, fs::Permissions::from_mode(old.mode() & 0o7777))?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &target)?;
        sync_dir(parent_dir(&target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Copies `path` to `backup` before it is edited, so the original can be
/// put back. The backup appears complete or not at all (written to a temp
/// file, fsynced, then linked into place), keeps the file's mode, and is
/// never overwritten: an existing backup with different content is an
/// error, one with the same content is fine, so a resumed run is
/// idempotent.
pub fn backup(path: &Path, backup: &Path) -> Result<(), ConfigError> {
    let io_err = |p: &Path, action: &'static str| {
        let p = p.to_owned();
        move |source| ConfigError::Io { path: p, action, source }
    };
    let content = fs::read(path).map_err(io_err(path, "read"))?;
    let mode = fs::metadata(path).map_err(io_err(path, "read the metadata of"))?.mode() & 0o7777;
    let compare = || -> Result<(), ConfigError> {
        let existing = fs::read(backup).map_err(io_err(backup, "read the existing backup"))?;
        if existing == content {
            Ok(())
        } else {
            Err(ConfigError::BackupDiffers { path: path.to_owned(), backup: backup.to_owned() })
        }
    };
    if fs::symlink_metadata(backup).is_ok() {
        return compare();
    }
    let (temp, mut file) = create_temp_beside(backup).map_err(io_err(backup, "create a temp file for"))?;
    let written = (|| {
        file.write_all(&content)?;
        fs::set_permissions(&temp, fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        // a hard link, unlike rename, fails if the backup appeared meanwhile
        fs::hard_link(&temp, backup)
    })();
    let _ = fs::remove_file(&temp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return compare(),
        Err(e) => return Err(io_err(backup, "write")(e)),
    }
    sync_dir(parent_dir(backup)).map_err(io_err(backup, "sync the directory of"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("config.ini"), text.as_bytes().to_vec()).expect("parses")
    }

    fn parse_err(text: &str) -> ConfigError {
        ConfigFile::parse(Path::new("config.ini"), text.as_bytes().to_vec()).expect_err("refused")
    }

    fn set(text: &str, section: &str, key: &str, value: &str) -> String {
        String::from_utf8(parse(text).with_value(section, key, value).expect("edits")).unwrap()
    }

    fn set_or_add(text: &str, section: &str, key: &str, value: &str) -> String {
        String::from_utf8(parse(text).with_value_or_added(section, key, value).expect("edits")).unwrap()
    }

    #[test]
    fn values_are_read_as_pegasus_reads_them() {
        let c = parse(
            "# top comment\n; another\n[zookeeper]\n  hosts_list =  a:2181,b:2181  # the ensemble\n\
             timeout_ms=30000;ms\n\tbare_key\nempty =\n[meta_server]\nhosts_list = other\n",
        );
        assert_eq!(c.get("zookeeper", "hosts_list"), Some("a:2181,b:2181"));
        assert_eq!(c.line_of("zookeeper", "hosts_list"), Some(4));
        assert_eq!(c.get("zookeeper", "timeout_ms"), Some("30000"));
        assert_eq!(c.get("zookeeper", "bare_key"), Some(""));
        assert_eq!(c.get("zookeeper", "empty"), Some(""));
        assert_eq!(c.get("meta_server", "hosts_list"), Some("other"));
        assert_eq!(c.get("meta_server", "timeout_ms"), None);
        assert_eq!(c.get("nope", "hosts_list"), None);
    }

    #[test]
    fn rewrites_a_value_before_a_trailing_comment() {
        let text = "# hosts\n[zookeeper]\n; the ensemble\nhosts_list = a:2181 # old one\nfoo = 1\n";
        assert_eq!(
            set(text, "zookeeper", "hosts_list", "x:2181,y:2181"),
            "# hosts\n[zookeeper]\n; the ensemble\nhosts_list = x:2181,y:2181 # old one\nfoo = 1\n"
        );
        let text = "[zookeeper]\nhosts_list = a;semicolon comment\n";
        assert_eq!(set(text, "zookeeper", "hosts_list", "b"), "[zookeeper]\nhosts_list = b;semicolon comment\n");
    }

    #[test]
    fn keeps_crlf_line_endings() {
        let text = "[zookeeper]\r\nhosts_list = a:2181\r\ntimeout = 3 ; s\r\n";
        assert_eq!(
            set(text, "zookeeper", "hosts_list", "b:2181"),
            "[zookeeper]\r\nhosts_list = b:2181\r\ntimeout = 3 ; s\r\n"
        );
        assert_eq!(set(text, "zookeeper", "timeout", "9"), "[zookeeper]\r\nhosts_list = a:2181\r\ntimeout = 9 ; s\r\n");
        assert_eq!(parse(text).get("zookeeper", "hosts_list"), Some("a:2181"));
    }

    #[test]
    fn the_first_of_duplicated_keys_wins_and_is_the_one_rewritten() {
        let text = "[zookeeper]\nhosts_list = first\nhosts_list = second\n";
        let c = parse(text);
        assert_eq!(c.get("zookeeper", "hosts_list"), Some("first"));
        assert_eq!(c.line_of("zookeeper", "hosts_list"), Some(2));
        assert_eq!(set(text, "zookeeper", "hosts_list", "new"), "[zookeeper]\nhosts_list = new\nhosts_list = second\n");
    }

    #[test]
    fn keeps_odd_spacing() {
        assert_eq!(set("[z]\nhosts_list=a\n", "z", "hosts_list", "bb"), "[z]\nhosts_list=bb\n");
        assert_eq!(
            set("[z]\nhosts_list   =   a   ; note\n", "z", "hosts_list", "bb"),
            "[z]\nhosts_list   =   bb   ; note\n"
        );
        assert_eq!(
            set("\t[ z ]\t\n\thosts_list\t=\ta\t\n", "z", "hosts_list", "bb"),
            "\t[ z ]\t\n\thosts_list\t=\tbb\t\n"
        );
        assert_eq!(set("[z]\nk =\n", "z", "k", "v"), "[z]\nk =v\n");
        assert_eq!(set("[z]\nk =   ;c\n", "z", "k", "v"), "[z]\nk =   v;c\n");
    }

    #[test]
    fn the_same_key_in_another_section_is_not_touched() {
        let text = "[meta_server]\nhosts_list = m\n[zookeeper]\nhosts_list = z\n[other]\nhosts_list = o\n";
        assert_eq!(
            set(text, "zookeeper", "hosts_list", "new"),
            "[meta_server]\nhosts_list = m\n[zookeeper]\nhosts_list = new\n[other]\nhosts_list = o\n"
        );
    }

    #[test]
    fn escaped_comment_markers_are_part_of_the_value() {
        let text = "[z]\nk = a^#b^;c # real comment\nnext = 1\n";
        let c = parse(text);
        assert_eq!(c.get("z", "k"), Some("a#b;c"));
        assert_eq!(set(text, "z", "k", "plain"), "[z]\nk = plain # real comment\nnext = 1\n");
        // the escaped bytes of another value stay as they are
        assert_eq!(set(text, "z", "next", "2"), "[z]\nk = a^#b^;c # real comment\nnext = 2\n");
    }

    #[test]
    fn bytes_outside_the_value_need_not_be_utf8() {
        let mut bytes = b"# caf\xe9\n[z]\nk = v ; \xff\xfe\n".to_vec();
        let c = ConfigFile::parse(Path::new("c.ini"), bytes.clone()).unwrap();
        let out = c.with_value("z", "k", "w").unwrap();
        bytes[15] = b'w';
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_missing_key_or_section_is_an_error() {
        let c = parse("[zookeeper]\nhosts_list = a\n");
        let e = c.with_value("zookeeper", "timeout", "1").unwrap_err();
        assert!(matches!(&e, ConfigError::MissingKey { key, .. } if key == "timeout"), "{e}");
        assert_eq!(e.to_string(), "config.ini: no key \"timeout\" in section [zookeeper]");
        let e = c.with_value("meta_server", "hosts_list", "1").unwrap_err();
        assert!(matches!(&e, ConfigError::MissingSection { section, .. } if section == "meta_server"), "{e}");
        let e = c.with_value_or_added("meta_server", "k", "1").unwrap_err();
        assert!(matches!(&e, ConfigError::MissingSection { .. }), "{e}");
    }

    #[test]
    fn a_bare_key_has_no_value_to_replace() {
        let e = parse("[z]\nk\n").with_value("z", "k", "v").unwrap_err();
        assert!(matches!(e, ConfigError::KeyWithoutEquals { line: 2, .. }), "{e}");
    }

    #[test]
    fn malformed_files_are_errors_naming_the_line() {
        let e = parse_err("[a]\nk = 1\n\n[b]\n[a]\n");
        assert!(matches!(e, ConfigError::DuplicateSection { line: 5, first_line: 1, .. }), "{e}");
        assert_eq!(e.to_string(), "config.ini:5: section [a] already defined on line 1");
        for (text, line) in
            [("k = 1\n", 1), ("[a]\n[b\n", 2), ("[a]\n[b] = 1\n", 2), ("[a]\n[ ]\n", 2), ("[a]\n = 1\n", 2)]
        {
            let e = parse_err(text);
            assert!(matches!(e, ConfigError::Syntax { line: l, .. } if l == line), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("config.ini:{line}: ")), "{e}");
        }
    }

    #[test]
    fn values_that_would_change_the_file_are_refused() {
        let c = parse("[z]\nk = v\n");
        for bad in ["a\nb", "a\rb", "a#b", "a;b", " a", "a\t", "a^"] {
            let e = c.with_value("z", "k", bad).unwrap_err();
            assert!(matches!(e, ConfigError::BadValue { .. }), "{bad:?}: {e}");
            let e = c.with_value_or_added("z", "new", bad).unwrap_err();
            assert!(matches!(e, ConfigError::BadValue { .. }), "{bad:?}: {e}");
        }
        for bad in ["", "a=b", "a#", "[a", " a", "a\nb"] {
            let e = c.with_value_or_added("z", bad, "v").unwrap_err();
            assert!(matches!(e, ConfigError::BadKey { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn an_existing_key_is_replaced_not_added() {
        assert_eq!(
            set_or_add(
                "[meta_server]\nrecover_from_replica_server = false ; x\n",
                "meta_server",
                "recover_from_replica_server",
                "true"
            ),
            "[meta_server]\nrecover_from_replica_server = true ; x\n"
        );
    }

    #[test]
    fn a_missing_key_is_added_after_the_sections_last_entry() {
        let text = "[meta_server]\nserver_list = a:34601\n# comment inside\nfoo = 1\n\n; the next section\n[zookeeper]\nhosts_list = z\n";
        assert_eq!(
            set_or_add(text, "meta_server", "recover_from_replica_server", "true"),
            "[meta_server]\nserver_list = a:34601\n# comment inside\nfoo = 1\nrecover_from_replica_server = true\n\n; the next section\n[zookeeper]\nhosts_list = z\n"
        );
    }

    #[test]
    fn a_key_added_to_an_empty_section_follows_its_header() {
        assert_eq!(set_or_add("[a]\n\n[b]\nk = 1\n", "a", "k", "v"), "[a]\nk = v\n\n[b]\nk = 1\n");
    }

    #[test]
    fn an_added_line_ends_as_the_files_lines_do() {
        assert_eq!(
            set_or_add("[a]\r\nx = 1\r\n\r\n[b]\r\ny = 2\r\n", "a", "k", "v"),
            "[a]\r\nx = 1\r\nk = v\r\n\r\n[b]\r\ny = 2\r\n"
        );
    }

    #[test]
    fn a_key_added_to_the_last_section_without_a_final_newline() {
        assert_eq!(set_or_add("[a]\nx = 1\n[b]\ny = 2", "b", "k", "v"), "[a]\nx = 1\n[b]\ny = 2\nk = v");
        assert_eq!(set_or_add("[a]\r\nx = 1\r\n[b]", "b", "k", "v"), "[a]\r\nx = 1\r\n[b]\r\nk = v");
        assert_eq!(set_or_add("[b]\ny = 2 ; c", "b", "k", "v"), "[b]\ny = 2 ; c\nk = v");
        // and the result reads back
        let added = set_or_add("[a]\nx = 1\n[b]\ny = 2", "b", "k", "v");
        assert_eq!(parse(&added).get("b", "k"), Some("v"));
    }

    // ---- property: an edit changes exactly the value's bytes ----

    #[derive(Debug, Clone)]
    enum Line {
        Blank(&'static str),
        Comment(&'static str, char, String),
        Entry {
            indent: &'static str,
            key: usize,
            before: &'static str,
            after: &'static str,
            value: String,
            comment: Option<(&'static str, char)>,
        },
    }

    fn blanks() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", " ", "  ", "\t", " \t "])
    }

    fn line() -> impl Strategy<Value = Line> {
        let marker = prop::sample::select(vec!['#', ';']);
        prop_oneof![
            1 => blanks().prop_map(Line::Blank),
            1 => (blanks(), marker.clone(), "[a-z =\\[\\]]{0,8}").prop_map(|(i, m, t)| Line::Comment(i, m, t)),
            4 => (
                blanks(),
                0..4usize,
                blanks(),
                blanks(),
                prop_oneof!["[a-z0-9.:,]{0,8}", "[a-z]{1,3}\\^[#;][a-z]{0,3}"],
                prop::option::of((blanks(), marker)),
            )
                .prop_map(|(indent, key, before, after, value, comment)| Line::Entry { indent, key, before, after, value, comment }),
        ]
    }

    /// A generated file: its bytes, and per section and key the first
    /// value and the byte offset it was written at.
    struct Built {
        bytes: Vec<u8>,
        first: Vec<(String, String, String, usize)>,
    }

    fn build(sections: &[(&'static str, Vec<Line>)], crlf: bool, final_newline: bool) -> Built {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        let mut first: Vec<(String, String, String, usize)> = Vec::new();
        let mut lines = 0;
        let total: usize = sections.iter().map(|(_, body)| 1 + body.len()).sum();
        let mut end_line = |out: &mut String| {
            lines += 1;
            if lines < total || final_newline {
                out.push_str(eol);
            }
        };
        for (i, (pad, body)) in sections.iter().enumerate() {
            let name = format!("s{i}");
            out.push_str(&format!("{pad}[{pad}{name}{pad}]{pad}"));
            end_line(&mut out);
            for l in body {
                match l {
                    Line::Blank(b) => out.push_str(b),
                    Line::Comment(i, m, t) => out.push_str(&format!("{i}{m}{t}")),
                    Line::Entry { indent, key, before, after, value, comment } => {
                        let key = format!("k{key}");
                        out.push_str(&format!("{indent}{key}{before}={after}"));
                        let tail = match comment {
                            // an empty value starts after every blank following `=`
                            Some((pad, m)) if value.is_empty() => {
                                out.push_str(pad);
                                format!("{m} note")
                            }
                            Some((pad, m)) => format!("{pad}{m} note"),
                            None => String::new(),
                        };
                        if !first.iter().any(|(s, k, _, _)| *s == name && *k == key) {
                            first.push((name.clone(), key, value.clone(), out.len()));
                        }
                        out.push_str(value);
                        out.push_str(&tail);
                    }
                }
                end_line(&mut out);
            }
        }
        Built { bytes: out.into_bytes(), first }
    }

    fn file() -> impl Strategy<Value = (Vec<(&'static str, Vec<Line>)>, bool, bool)> {
        (prop::collection::vec((blanks(), prop::collection::vec(line(), 0..8)), 1..5), any::<bool>(), any::<bool>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn an_edit_changes_exactly_the_values_bytes(
            (sections, crlf, final_newline) in file(),
            pick in any::<prop::sample::Index>(),
            new in "[a-z0-9.:,]{0,12}",
        ) {
            let built = build(&sections, crlf, final_newline);
            let c = ConfigFile::parse(Path::new("gen.ini"), built.bytes.clone()).unwrap();
            for (s, k, v, _) in &built.first {
                prop_assert_eq!(c.get(s, k).map(str::to_owned), Some(v.replace("^#", "#").replace("^;", ";")));
            }
            prop_assume!(!built.first.is_empty());
            let (section, key, old, at) = &built.first[pick.index(built.first.len())];
            let out = c.with_value(section, key, &new).unwrap();
            // the bytes around the value are the original ones
            prop_assert_eq!(&out[..*at], &built.bytes[..*at]);
            prop_assert_eq!(&out[*at..at + new.len()], new.as_bytes());
            prop_assert_eq!(&out[at + new.len()..], &built.bytes[at + old.len()..]);
            // and read back, only that value changed
            let edited = ConfigFile::parse(Path::new("gen.ini"), out).unwrap();
            for (s, k, v, _) in &built.first {
                let expected = if s == section && k == key {
                    new.clone()
                } else {
                    v.replace("^#", "#").replace("^;", ";")
                };
                prop_assert_eq!(edited.get(s, k).map(str::to_owned), Some(expected));
            }
            if !new.is_empty() {
                prop_assert_eq!(edited.value_span(section, key), Some(*at..at + new.len()));
            }
        }
    }

    // ---- files on disk ----

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn write_atomic_replaces_the_content_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ini");
        fs::write(&path, b"[z]\nhosts_list = a\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"[z]\nhosts_list = b\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[z]\nhosts_list = b\n");
        assert_eq!(mode(&path), 0o640);
        let meta = fs::metadata(&path).unwrap();
        let owner = fs::metadata(dir.path()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner.uid(), owner.gid()));
        // no temp file left behind
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.ini")]);
    }

    #[test]
    fn write_atomic_replaces_a_symlinks_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.ini");
        let link = dir.path().join("config.ini");
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(mode(&real), 0o600);
    }

    #[test]
    fn backup_copies_once_and_refuses_a_different_existing_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ini");
        let copy = dir.path().join("config.ini.bak");
        fs::write(&path, b"[z]\nhosts_list = a\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        backup(&path, &copy).unwrap();
        assert_eq!(fs::read(&copy).unwrap(), b"[z]\nhosts_list = a\n");
        assert_eq!(mode(&copy), 0o640);
        // the same content again: a resumed run
        backup(&path, &copy).unwrap();
        // the original changed since: the backup is kept, not overwritten
        fs::write(&path, b"[z]\nhosts_list = b\n").unwrap();
        let e = backup(&path, &copy).unwrap_err();
        assert!(matches!(e, ConfigError::BackupDiffers { .. }), "{e}");
        assert_eq!(fs::read(&copy).unwrap(), b"[z]\nhosts_list = a\n");
        let names = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 2, "no temp file left behind");
    }

    #[test]
    fn read_names_the_file_it_cannot_read() {
        let e = ConfigFile::read(Path::new("/nonexistent/config.ini")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/config.ini: cannot read: "), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ini");
        fs::write(&path, b"[z]\nk = v\n").unwrap();
        let c = ConfigFile::read(&path).unwrap();
        assert_eq!((c.path(), c.bytes(), c.get("z", "k")), (path.as_path(), &b"[z]\nk = v\n"[..], Some("v")));
    }
}
