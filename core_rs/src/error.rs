//! The one error type of the crate; `py.rs` converts it to Python exceptions.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Input that does not parse or breaks a documented limit; `position` is a
    /// character (EMV) or byte offset where the problem starts, when there is one.
    Invalid { message: String, position: Option<usize> },
}

impl CoreError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::Invalid { message: message.into(), position: None }
    }
    pub fn at(message: impl Into<String>, position: usize) -> Self {
        CoreError::Invalid { message: message.into(), position: Some(position) }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Invalid { message, position: Some(p) } => write!(f, "{message} (at position {p})"),
            CoreError::Invalid { message, position: None } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for CoreError {}
