//! The library's single error type. Every variant names what is at fault
//! (file, node, option) so the CLI can print one clear line.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error("{path}: not a valid ONNX model: {reason}")]
    Decode { path: PathBuf, reason: String },

    #[error("{path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },

    #[error("invalid graph: {0}")]
    InvalidGraph(String),

    #[error("node '{node}': {reason}")]
    Node { node: String, reason: String },

    #[error("node '{node}': unsupported attribute {name}={value}")]
    UnsupportedAttr { node: String, name: String, value: String },

    #[error("node '{node}': shape mismatch: expected {expected}, got {actual}")]
    ShapeMismatch { node: String, expected: String, actual: String },

    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },

    #[error("option {option}: {reason}")]
    Option { option: String, reason: String },

    #[error("after pass '{pass}': {inner}")]
    AfterPass { pass: String, inner: Box<Error> },

    #[error("{0}")]
    Limit(String),

    #[error("evaluation failed: {0}")]
    Eval(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
    pub fn node(node: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Node { node: node.into(), reason: reason.into() }
    }
    pub fn tensor(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor { name: name.into(), reason: reason.into() }
    }
    pub fn option(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Option { option: option.into(), reason: reason.into() }
    }
    pub fn after_pass(self, pass: &str) -> Self {
        Error::AfterPass { pass: pass.to_string(), inner: Box::new(self) }
    }
    /// Attach a file path to an error that came from inside a model.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            e @ (Error::Io { .. } | Error::Decode { .. } | Error::InvalidModel { .. }) => e,
            other => Error::InvalidModel { path: path.to_path_buf(), reason: other.to_string() },
        }
    }
}
