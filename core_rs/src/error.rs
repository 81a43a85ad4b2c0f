//! The one error type of the crate; `py.rs` converts it to Python exceptions.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Input that does not parse or breaks a documented limit; `position` is a
    /// character (EMV) or byte offset where the problem starts, when there is one.
    Invalid { message: String, position: Option<usize> },
    /// A signed token that must be refused (bad encoding, truncated, unknown version,
    /// bad signature or wrong key, expired); Python sees `TokenError`.
    Token { message: String },
    /// An EMV payload or field list that breaks the format or a scheme's rules; `position` is
    /// the 0-based character position where the problem starts. Python sees `EmvError`.
    Emv { message: String, position: Option<usize> },
}

impl CoreError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::Invalid { message: message.into(), position: None }
    }
    pub fn at(message: impl Into<String>, position: usize) -> Self {
        CoreError::Invalid { message: message.into(), position: Some(position) }
    }
    pub fn token(message: impl Into<String>) -> Self {
        CoreError::Token { message: message.into() }
    }
    pub fn emv(message: impl Into<String>, position: Option<usize>) -> Self {
        CoreError::Emv { message: message.into(), position }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Invalid { message, position: Some(p) } => write!(f, "{message} (at position {p})"),
            CoreError::Invalid { message, position: None } => write!(f, "{message}"),
            CoreError::Token { message } => write!(f, "{message}"),
            CoreError::Emv { message, position: Some(p) } => write!(f, "{message} (at position {p})"),
            CoreError::Emv { message, position: None } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for CoreError {}
