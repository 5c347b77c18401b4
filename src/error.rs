//! The library's one error type.
//!
//! Owns: classifying failures so callers can react (exit codes, retries).
//! Integrity failures (authentication tag mismatch, hostile or corrupt
//! records) are kept apart from transient I/O so that nothing ever retries
//! away corruption.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: the CLI maps these to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The repository does not exist at the given location.
    RepositoryNotFound,
    /// No key file could be opened with the given passphrase.
    WrongPassphrase,
    /// A lock held by another process prevents the operation.
    Locked,
    /// This operation's own lock can no longer be trusted (not refreshed in
    /// time, removed, or a refresh failed): it stops before its next commit.
    LockLost,
    /// Stored data failed authentication or could not be decoded: corrupt
    /// or tampered with. Never retried.
    Integrity,
    /// The repository was written by a newer, unknown format version.
    UnsupportedVersion,
    /// An I/O failure from the backend or the local filesystem.
    Io,
    /// The caller asked for something that does not exist (snapshot, path).
    NotFound,
    /// The caller's input is invalid (bad argument, bad option).
    InvalidInput,
    /// The storage refuses deletes (an append-only REST server), and the
    /// operation would delete: it stopped before writing anything.
    AppendOnly,
    /// Restore refused an entry that would escape its target directory.
    UnsafePath,
    /// An entry of a backup source could not be read; the backup goes on
    /// without it.
    Source,
    /// The caller asked the operation to stop (Ctrl-C, SIGTERM); what it
    /// stored so far is indexed, nothing was committed.
    Interrupted,
}

/// The library error: a kind plus a message that names the object or path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure with a kind and a human message.
    #[error("{message}")]
    Msg {
        /// What kind of failure this is.
        kind: ErrorKind,
        /// The full message, naming the object or path involved.
        message: String,
    },
    /// An I/O error with the path or object it happened on.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on what.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Msg {
            kind,
            message: message.into(),
        }
    }

    /// An integrity failure (corrupt or tampered data).
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }

    /// A malformed record: the decoder names the record kind and the problem.
    pub fn malformed(record: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Integrity,
            format!("malformed {record}: {problem}"),
        )
    }

    /// Invalid caller input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Something the caller named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// An I/O error on `path`.
    pub fn io_path(what: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context: format!("{what} {}", path.into().display()),
            source,
        }
    }

    /// A source entry that could not be read (backup goes on without it).
    pub fn source_io(what: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::new(
            ErrorKind::Source,
            format!("{what} {}: {source}", path.display()),
        )
    }

    /// An I/O error with free-form context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Msg { kind, .. } => *kind,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// Prefix the message with more context, keeping the kind.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            Error::Msg { kind, message } => Error::Msg {
                kind,
                message: format!("{context}: {message}"),
            },
            Error::Io {
                context: inner,
                source,
            } => Error::Io {
                context: format!("{context}: {inner}"),
                source,
            },
        }
    }

    /// True if the underlying I/O error is "not found".
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Msg { kind, .. } => *kind == ErrorKind::NotFound,
        }
    }
}
