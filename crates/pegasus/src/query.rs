//! A part of what a status reads that could not be learnt, and why.

use serde::Serialize;

use crate::error::{Error, Result};

/// A part of the status that could not be learnt says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Query<T> {
    Known(T),
    Unknown(String),
}

impl<T> Query<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Query::Known(v) => Some(v),
            Query::Unknown(_) => None,
        }
    }

    pub(crate) fn from_result(r: Result<T>) -> Query<T> {
        match r {
            Ok(v) => Query::Known(v),
            Err(Error::Transport { rpc, code, .. }) if code == "ERR_HANDLER_NOT_FOUND" => {
                Query::Unknown(format!("{rpc} is not served by this meta server ({code})"))
            }
            Err(e) => Query::Unknown(e.to_string()),
        }
    }
}
