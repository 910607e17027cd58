//! Meta function levels (`meta_function_level` in idl/meta_admin.thrift).

use std::fmt;
use std::str::FromStr;

/// What the meta server lets itself do. The server does not check a level
/// it is sent, so names are parsed here, before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Stopped,
    Blind,
    Freezed,
    Steady,
    Lively,
    /// Sent, it only queries; never a level to set.
    Invalid,
}

impl Level {
    /// The levels that can be set.
    pub const SETTABLE: [Level; 5] = [Level::Stopped, Level::Blind, Level::Freezed, Level::Steady, Level::Lively];

    /// The enum value on the wire.
    pub fn code(self) -> i32 {
        match self {
            Level::Stopped => 100,
            Level::Blind => 200,
            Level::Freezed => 300,
            Level::Steady => 400,
            Level::Lively => 500,
            Level::Invalid => 10000,
        }
    }

    pub fn from_code(v: i32) -> Option<Level> {
        [Level::Stopped, Level::Blind, Level::Freezed, Level::Steady, Level::Lively, Level::Invalid]
            .into_iter()
            .find(|l| l.code() == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Stopped => "stopped",
            Level::Blind => "blind",
            Level::Freezed => "freezed",
            Level::Steady => "steady",
            Level::Lively => "lively",
            Level::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A level name that is not one of the five that can be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown meta level {0:?}: one of stopped, blind, freezed, steady, lively")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    /// One of the five settable names, in any case (`invalid` is refused:
    /// it sets nothing).
    fn from_str(s: &str) -> Result<Level, UnknownLevel> {
        let lower = s.trim().to_ascii_lowercase();
        Level::SETTABLE.into_iter().find(|l| l.name() == lower).ok_or_else(|| UnknownLevel(s.to_string()))
    }
}
