//! The one error type of the service: every failure a caller can see, with the gRPC code,
//! the `ErrorInfo` reason and the `google.rpc` details it travels with.

use std::collections::HashMap;

use sea_orm::{DbErr, RuntimeErr, SqlErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

use crate::store::committing;

/// The `ErrorInfo.domain` of every error this service answers.
pub const ERROR_DOMAIN: &str = "workspaced";

/// The most characters of a client's value an error echoes: enough to recognise the value,
/// and no way for hostile input to grow the answer.
pub const MAX_ECHO_CHARS: usize = 64;

/// The most field or precondition violations one answer lists; when there are more, the
/// last one says how many were left out.
pub const MAX_VIOLATIONS: usize = 20;

/// The most bytes `grpc-message` takes once percent-encoded.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The most bytes of the `grpc-*` trailers of an error, counted as HTTP/2 counts a header
/// list (name, value and 32 per entry). grpc-core clients (grpcio, grpc-node's native
/// client) take at most 8 KB of metadata and answer RESOURCE_EXHAUSTED in place of our code
/// beyond it; the remaining kilobyte is left for `:status` and `content-type`, which share
/// the header list of a trailers-only answer.
const MAX_TRAILER_BYTES: usize = 7 * 1024;

/// A client's value as an error may echo it: cut to [`MAX_ECHO_CHARS`] characters.
pub(crate) fn echo(s: &str) -> String {
    cut(s, MAX_ECHO_CHARS)
}

/// `s` cut to at most `max` characters (not bytes, so never inside a character), the last
/// one an ellipsis when anything was left out.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..end])
        }
    }
}

/// The bytes `c` takes in `grpc-message`, which tonic percent-encodes: controls,
/// non-ASCII bytes and `` "#%<>`?{}`` and space take three each (tonic's set, not exported).
fn encoded_len(c: char) -> usize {
    match c {
        ' ' | '"' | '#' | '%' | '<' | '>' | '`' | '?' | '{' | '}' => 3,
        c if c.is_ascii_control() || !c.is_ascii() => 3 * c.len_utf8(),
        _ => 1,
    }
}

/// `message` cut so that percent-encoded it takes at most `max` bytes, ellipsis included.
fn cut_encoded(message: &str, max: usize) -> String {
    if message.chars().map(encoded_len).sum::<usize>() <= max {
        return message.to_owned();
    }
    let budget = max.saturating_sub(encoded_len('…'));
    let mut used = 0;
    let mut out = String::new();
    for c in message.chars() {
        used += encoded_len(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// The first `MAX_VIOLATIONS - 1` of `items` and `more(n)` for the `n` left out, when there
/// are more than [`MAX_VIOLATIONS`]; all of them otherwise.
fn capped<T: Clone>(items: &[T], more: impl FnOnce(usize) -> T) -> Vec<T> {
    if items.len() <= MAX_VIOLATIONS {
        return items.to_vec();
    }
    let keep = MAX_VIOLATIONS - 1;
    let mut out = items[..keep].to_vec();
    out.push(more(items.len() - keep));
    out
}

fn more_fields(n: usize) -> BadField {
    BadField {
        field: "…".into(),
        description: format!("and {n} more bad fields"),
    }
}

fn more_preconditions(n: usize) -> Precondition {
    Precondition {
        kind: "…".into(),
        subject: "…".into(),
        description: format!("and {n} more failed preconditions"),
    }
}

/// A `Result` whose error is the service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `ErrorInfo.reason` values of the contract; each has one meaning only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reason {
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    PermissionDenied,
    InvalidArgument,
    WorkspaceNotFound,
    WorkspaceExists,
    RequestIdExists,
    WorkspaceNotEmpty,
    WorkspaceArchived,
    BuiltInWorkspace,
    MemberNotFound,
    MemberExists,
    PrincipalNotFound,
    LastAdmin,
    ResourceNotFound,
    TooManyResourceKinds,
    EtagMismatch,
    DatabaseUnavailable,
    GpuRequestExists,
    GpuRequestNotFound,
    RevisionExpired,
    WatchTooSlow,
    Overloaded,
    RequestTimeout,
    RequestTooLarge,
    MethodNotFound,
    Internal,
}

impl Reason {
    /// The reason as written in `ErrorInfo.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TokenMissing => "TOKEN_MISSING",
            Reason::TokenInvalid => "TOKEN_INVALID",
            Reason::TokenExpired => "TOKEN_EXPIRED",
            Reason::PermissionDenied => "PERMISSION_DENIED",
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::WorkspaceNotFound => "WORKSPACE_NOT_FOUND",
            Reason::WorkspaceExists => "WORKSPACE_EXISTS",
            Reason::RequestIdExists => "REQUEST_ID_EXISTS",
            Reason::WorkspaceNotEmpty => "WORKSPACE_NOT_EMPTY",
            Reason::WorkspaceArchived => "WORKSPACE_ARCHIVED",
            Reason::BuiltInWorkspace => "BUILT_IN_WORKSPACE",
            Reason::MemberNotFound => "MEMBER_NOT_FOUND",
            Reason::MemberExists => "MEMBER_EXISTS",
            Reason::PrincipalNotFound => "PRINCIPAL_NOT_FOUND",
            Reason::LastAdmin => "LAST_ADMIN",
            Reason::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Reason::TooManyResourceKinds => "TOO_MANY_RESOURCE_KINDS",
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Reason::GpuRequestExists => "GPU_REQUEST_EXISTS",
            Reason::GpuRequestNotFound => "GPU_REQUEST_NOT_FOUND",
            Reason::RevisionExpired => "REVISION_EXPIRED",
            Reason::WatchTooSlow => "WATCH_TOO_SLOW",
            Reason::Overloaded => "OVERLOADED",
            Reason::RequestTimeout => "REQUEST_TIMEOUT",
            Reason::RequestTooLarge => "REQUEST_TOO_LARGE",
            Reason::MethodNotFound => "METHOD_NOT_FOUND",
            Reason::Internal => "INTERNAL",
        }
    }
}

/// One bad field of a request: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    /// Path of the field in the request, such as `workspace.name`.
    pub field: String,
    /// What is wrong, in a sentence a person understands.
    pub description: String,
}

/// One failed precondition, as in `google.rpc.PreconditionFailure.Violation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The kind of precondition, such as `RESOURCES`.
    pub kind: String,
    /// What failed it, such as the resource kind `model`.
    pub subject: String,
    /// What failed, in a sentence.
    pub description: String,
}

/// `ErrorInfo.metadata`: what an error's message names (the workspace, the member, the
/// resource), keyed in lowerCamelCase as AIP-193 asks, so that clients need not parse the
/// message. Values are cut to 64 characters, as every echoed value is.
pub type Meta = Vec<(&'static str, String)>;

/// Every failure a caller can see. The gRPC code follows from the variant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: one entry per bad field. Never empty.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<BadField>),
    /// The caller could not be authenticated.
    #[error("{message}")]
    Unauthenticated {
        /// `TOKEN_MISSING`, `TOKEN_INVALID` or `TOKEN_EXPIRED`.
        reason: Reason,
        /// What is wrong with the credentials; never the token itself.
        message: String,
    },
    /// The caller may not do this.
    #[error("{message}")]
    PermissionDenied {
        /// What is denied, and where.
        message: String,
        /// What the message names.
        meta: Meta,
    },
    /// The named thing does not exist.
    #[error("{message}")]
    NotFound {
        /// Which kind of thing is missing.
        reason: Reason,
        /// Which one is missing.
        message: String,
        /// What the message names.
        meta: Meta,
    },
    /// The thing to create exists already.
    #[error("{message}")]
    AlreadyExists {
        /// Which kind of thing exists.
        reason: Reason,
        /// Which one exists.
        message: String,
        /// What the message names.
        meta: Meta,
    },
    /// The system is not in a state that allows the request.
    #[error("{message}")]
    FailedPrecondition {
        /// Which rule refused the request.
        reason: Reason,
        /// What the caller must change first.
        message: String,
        /// One entry per failed precondition; may be empty.
        violations: Vec<Precondition>,
        /// What the message names.
        meta: Meta,
    },
    /// The request's etag does not match the current one.
    #[error("the etag does not match the current one; read the resource again and retry")]
    EtagMismatch,
    /// The database cannot be reached.
    #[error("the database is unavailable")]
    DatabaseUnavailable(String),
    /// More calls are in flight than the server holds; retry with backoff.
    #[error("{0}")]
    Overloaded(String),
    /// The request did not arrive in time (its body, or all of it).
    #[error("{0}")]
    RequestTimeout(String),
    /// The request is larger than the server accepts.
    #[error("{0}")]
    RequestTooLarge(String),
    /// A watch's client read slower than events committed; it resumes from its last revision.
    #[error("{0}")]
    WatchTooSlow(String),
    /// The path names no method the server serves.
    #[error("{0}")]
    MethodNotFound(String),
    /// A bug or an unexpected database failure; logged once and answered opaquely.
    #[error("internal error")]
    Internal(String),
}

fn describe(fields: &[BadField]) -> String {
    capped(fields, more_fields)
        .iter()
        .map(|f| format!("{}: {}", f.field, f.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A single bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![BadField {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// The caller may not do this.
    pub fn denied(message: impl Into<String>) -> Self {
        Error::PermissionDenied {
            message: message.into(),
            meta: Meta::new(),
        }
    }

    /// `what` (named by `message`) does not exist.
    pub fn not_found(reason: Reason, message: impl Into<String>) -> Self {
        Error::NotFound {
            reason,
            message: message.into(),
            meta: Meta::new(),
        }
    }

    /// What a create would make exists already.
    pub fn exists(reason: Reason, message: impl Into<String>) -> Self {
        Error::AlreadyExists {
            reason,
            message: message.into(),
            meta: Meta::new(),
        }
    }

    /// The workspace named `name` does not exist.
    pub fn workspace_not_found(name: &str) -> Self {
        Error::not_found(
            Reason::WorkspaceNotFound,
            format!("workspace \"{}\" not found", echo(name)),
        )
        .with("workspace", name)
    }

    /// Adds `key` = `value` to the `ErrorInfo.metadata` of an error that names things (see
    /// [`Meta`]); other errors are returned as they are.
    pub fn with(mut self, key: &'static str, value: impl ToString) -> Self {
        if let Error::PermissionDenied { meta, .. }
        | Error::NotFound { meta, .. }
        | Error::AlreadyExists { meta, .. }
        | Error::FailedPrecondition { meta, .. } = &mut self
        {
            meta.push((key, value.to_string()));
        }
        self
    }

    /// The `ErrorInfo.metadata` entries.
    fn meta(&self) -> &[(&'static str, String)] {
        match self {
            Error::PermissionDenied { meta, .. }
            | Error::NotFound { meta, .. }
            | Error::AlreadyExists { meta, .. }
            | Error::FailedPrecondition { meta, .. } => meta,
            _ => &[],
        }
    }

    /// A precondition failed: one `PreconditionFailure` violation whose type is the reason
    /// and whose subject is what failed it (such as `workspaces/ml-team`).
    pub fn precondition(
        reason: Reason,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Error::FailedPrecondition {
            reason,
            violations: vec![Precondition {
                kind: reason.as_str().to_owned(),
                subject: subject.into(),
                description: message.clone(),
            }],
            message,
            meta: Meta::new(),
        }
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::EtagMismatch => Code::Aborted,
            Error::DatabaseUnavailable(_) | Error::Overloaded(_) => Code::Unavailable,
            Error::RequestTimeout(_) => Code::DeadlineExceeded,
            Error::RequestTooLarge(_) | Error::WatchTooSlow(_) => Code::ResourceExhausted,
            Error::MethodNotFound(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
        }
    }

    /// The `ErrorInfo.reason` this error answers with.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidArgument(_) => Reason::InvalidArgument,
            Error::Unauthenticated { reason, .. }
            | Error::NotFound { reason, .. }
            | Error::AlreadyExists { reason, .. }
            | Error::FailedPrecondition { reason, .. } => *reason,
            Error::PermissionDenied { .. } => Reason::PermissionDenied,
            Error::EtagMismatch => Reason::EtagMismatch,
            Error::DatabaseUnavailable(_) => Reason::DatabaseUnavailable,
            Error::Overloaded(_) => Reason::Overloaded,
            Error::RequestTimeout(_) => Reason::RequestTimeout,
            Error::RequestTooLarge(_) => Reason::RequestTooLarge,
            Error::MethodNotFound(_) => Reason::MethodNotFound,
            Error::WatchTooSlow(_) => Reason::WatchTooSlow,
            Error::Internal(_) => Reason::Internal,
        }
    }
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        // Constraint violations that reach here are races the caller lost; the callers that
        // expect one (unique names) map it themselves before this conversion.
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return Error::Internal(format!("unexpected unique violation: {err}"));
        }
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                Error::DatabaseUnavailable(err.to_string())
            }
            // Its caller has gone, or was answered at the deadline: no one sees this.
            DbErr::Custom(why) if why == committing::ABANDONED => {
                Error::DatabaseUnavailable(err.to_string())
            }
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_connection_error(e) =>
            {
                Error::DatabaseUnavailable(err.to_string())
            }
            _ => Error::Internal(err.to_string()),
        }
    }
}

/// Whether a driver error means the database cannot take the request now (it cannot be
/// reached, or refused the request for a while: a lock or statement timeout, a deadlock),
/// as opposed to a bad query: the call's transaction was rolled back, and a retry may go
/// through.
fn is_connection_error(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match err {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        // PostgreSQL's class 08 (connection exception), 57P0x (server shutting down), 55P03
        // (a lock held past `store::LOCK_TIMEOUT`), 57014 (a statement cancelled, as at
        // `store::STATEMENT_TIMEOUT`), 40P01 and 40001 (the transaction chosen to end a
        // deadlock, or a serialization failure: none is known to happen, but a retry
        // succeeds); SQLite's BUSY (5, and its extended 261 and 517) and LOCKED (6) after
        // the busy timeout: the database cannot take the request now.
        E::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57P0")
                || matches!(
                    &*c,
                    "55P03" | "57014" | "40P01" | "40001" | "5" | "6" | "261" | "517"
                )
        }),
        _ => false,
    }
}

/// The trailers `status` answers with, in bytes as HTTP/2 counts a header list.
fn trailer_size(status: &Status) -> usize {
    let mut headers = http::HeaderMap::new();
    match status.add_header(&mut headers) {
        Ok(()) => headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum(),
        // tonic could not write it: count it as too large, so the smallest form is sent.
        Err(_) => usize::MAX,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            // A call refused its commit had been answered, or its caller had gone: no alarm.
            Error::DatabaseUnavailable(cause) if cause.contains(committing::ABANDONED) => {
                tracing::debug!(%cause, "call abandoned")
            }
            Error::DatabaseUnavailable(cause) => tracing::warn!(%cause, "database unavailable"),
            // Logged once here, at the boundary; the caller gets no internals.
            Error::Internal(cause) => tracing::error!(%cause, "internal error"),
            _ => {}
        }
        // Every part of the answer is bounded, so that hostile input still gets its own code
        // and reason through clients that refuse large trailers (see MAX_TRAILER_BYTES).
        let message = cut_encoded(&err.to_string(), MAX_MESSAGE_BYTES);
        let fields = match &err {
            Error::InvalidArgument(fields) => capped(fields, more_fields),
            _ => Vec::new(),
        };
        let preconditions = match &err {
            Error::FailedPrecondition { violations, .. } => capped(violations, more_preconditions),
            _ => Vec::new(),
        };
        // Echoed values are cut where they are written, but a violation may still be long
        // (a description listing the allowed values); cut every string of the details
        // shorter and shorter until the trailers fit. The last cut always fits (tested).
        let build = |max: usize| {
            let mut details = ErrorDetails::new();
            details.set_error_info(
                err.reason().as_str(),
                ERROR_DOMAIN,
                err.meta()
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), cut(&echo(v), max)))
                    .collect::<HashMap<String, String>>(),
            );
            if !fields.is_empty() {
                details.set_bad_request(
                    fields
                        .iter()
                        .map(|f| FieldViolation::new(cut(&f.field, max), cut(&f.description, max)))
                        .collect::<Vec<_>>(),
                );
            }
            if !preconditions.is_empty() {
                details.set_precondition_failure(
                    preconditions
                        .iter()
                        .map(|v| {
                            PreconditionViolation::new(
                                cut(&v.kind, max),
                                cut(&v.subject, max),
                                cut(&v.description, max),
                            )
                        })
                        .collect::<Vec<_>>(),
                );
            }
            Status::with_error_details(err.code(), message.clone(), details)
        };
        let mut status = build(usize::MAX);
        for max in [256, 64, 16] {
            if trailer_size(&status) <= MAX_TRAILER_BYTES {
                break;
            }
            status = build(max);
        }
        status
    }
}

/// Stand-ins for the tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    use std::borrow::Cow;

    use sea_orm::sqlx::error::{DatabaseError, ErrorKind};

    /// A database error as sqlx renders PostgreSQL's: its `Display` appends the server's
    /// source line, its `message` is the database's own words.
    #[derive(Debug)]
    pub(crate) struct PgLike {
        pub code: &'static str,
        pub message: &'static str,
    }

    impl std::fmt::Display for PgLike {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} at line 948", self.message)
        }
    }

    impl std::error::Error for PgLike {}

    impl DatabaseError for PgLike {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(self.code.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::{testing::PgLike, *};

    #[test]
    fn a_database_that_cannot_take_the_request_now_is_unavailable_and_a_bad_query_internal() {
        for (code, unavailable) in [
            ("08006", true),
            ("57P01", true),
            ("55P03", true),
            ("57014", true),
            ("5", true),
            ("42P01", false),
            ("22001", false),
        ] {
            let e = std::sync::Arc::new(sea_orm::sqlx::Error::Database(Box::new(PgLike {
                code,
                message: "refused",
            })));
            let err = Error::from(DbErr::Exec(RuntimeErr::SqlxError(e)));
            assert_eq!(
                matches!(err, Error::DatabaseUnavailable(_)),
                unavailable,
                "{code}: {err:?}"
            );
        }
    }

    #[test]
    fn echo_cuts_characters_not_bytes() {
        let a = |n: usize| "a".repeat(n);
        let e = |n: usize| "é".repeat(n);
        for (input, want) in [
            (String::new(), String::new()),
            ("permission".into(), "permission".into()),
            (a(64), a(64)),
            (a(65), format!("{}…", a(63))),
            (a(20_000), format!("{}…", a(63))),
            (e(64), e(64)),
            (e(100), format!("{}…", e(63))),
        ] {
            let got = echo(&input);
            assert_eq!(got, want, "{} characters", input.chars().count());
            assert!(got.chars().count() <= MAX_ECHO_CHARS);
        }
    }

    fn bad_fields(n: usize) -> Error {
        Error::InvalidArgument(
            (0..n)
                .map(|i| BadField {
                    field: format!("f{i}"),
                    description: "is bad".into(),
                })
                .collect(),
        )
    }

    fn failed_preconditions(n: usize) -> Error {
        Error::FailedPrecondition {
            reason: Reason::WorkspaceNotEmpty,
            message: "not empty".into(),
            violations: (0..n)
                .map(|i| Precondition {
                    kind: "RESOURCES".into(),
                    subject: format!("kind-{i}"),
                    description: "registered".into(),
                })
                .collect(),
            meta: Meta::new(),
        }
    }

    /// The (field, description) pairs of a status's BadRequest or PreconditionFailure.
    fn violations(status: &Status) -> Vec<(String, String)> {
        if let Some(b) = status.get_details_bad_request() {
            return b
                .field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect();
        }
        status
            .get_details_precondition_failure()
            .map(|p| {
                p.violations
                    .into_iter()
                    .map(|v| (v.subject, v.description))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn at_most_twenty_violations_the_last_counting_the_rest() {
        for (name, err, count, last) in [
            ("1 field", bad_fields(1), 1, ("f0", "is bad")),
            ("20 fields", bad_fields(20), 20, ("f19", "is bad")),
            (
                "21 fields",
                bad_fields(21),
                20,
                ("…", "and 2 more bad fields"),
            ),
            (
                "64 fields",
                bad_fields(64),
                20,
                ("…", "and 45 more bad fields"),
            ),
            (
                "1 precondition",
                failed_preconditions(1),
                1,
                ("kind-0", "registered"),
            ),
            (
                "20 preconditions",
                failed_preconditions(20),
                20,
                ("kind-19", "registered"),
            ),
            (
                "21 preconditions",
                failed_preconditions(21),
                20,
                ("…", "and 2 more failed preconditions"),
            ),
            (
                "1000 preconditions",
                failed_preconditions(1000),
                20,
                ("…", "and 981 more failed preconditions"),
            ),
        ] {
            let status = Status::from(err);
            let got = violations(&status);
            assert_eq!(got.len(), count, "{name}");
            let (field, description) = got.last().expect("a violation");
            assert_eq!((field.as_str(), description.as_str()), last, "{name}");
            // The first ones are kept as they were, in their order.
            for (i, (field, _)) in got.iter().take(count.min(MAX_VIOLATIONS - 1)).enumerate() {
                let number = field.trim_start_matches(|c: char| !c.is_ascii_digit());
                assert_eq!(number, i.to_string(), "{name}: {field} at {i}");
            }
        }
    }

    #[test]
    fn small_answers_are_unchanged() {
        let status = Status::from(Error::InvalidArgument(vec![
            BadField {
                field: "workspace.name".into(),
                description: "is required".into(),
            },
            BadField {
                field: "workspace.labels[\"Bad\"]".into(),
                description: "key may contain only a-z, 0-9, '-', '_' and '.'".into(),
            },
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid argument: workspace.name: is required; workspace.labels[\"Bad\"]: key may \
             contain only a-z, 0-9, '-', '_' and '.'"
        );
        assert_eq!(
            violations(&status),
            vec![
                ("workspace.name".into(), "is required".into()),
                (
                    "workspace.labels[\"Bad\"]".into(),
                    "key may contain only a-z, 0-9, '-', '_' and '.'".into()
                ),
            ]
        );
    }

    /// The bytes `grpc-message` takes on the wire.
    fn wire_message_len(status: &Status) -> usize {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).expect("headers");
        headers.get("grpc-message").map_or(0, |v| v.len())
    }

    #[test]
    fn trailers_stay_under_eight_kilobytes_whatever_the_input() {
        // Four-byte characters, and characters that percent-encoding triples.
        let wide = "𝄞".repeat(20_000);
        let encoded = "\" %{}".repeat(4_000);
        let field = |s: &str| BadField {
            field: s.into(),
            description: s.into(),
        };
        let precondition = |s: &str| Precondition {
            kind: s.into(),
            subject: s.into(),
            description: s.into(),
        };
        for (what, err) in [
            (
                "1000 wide fields",
                Error::InvalidArgument(vec![field(&wide); 1000]),
            ),
            (
                "20 encoded fields",
                Error::InvalidArgument(vec![field(&encoded); 20]),
            ),
            (
                "1000 wide preconditions",
                Error::FailedPrecondition {
                    reason: Reason::WorkspaceNotEmpty,
                    message: wide.clone(),
                    violations: vec![precondition(&wide); 1000],
                    meta: vec![("workspace", wide.clone()), ("kind", wide.clone())],
                },
            ),
            (
                "a long message",
                Error::NotFound {
                    reason: Reason::MemberNotFound,
                    message: encoded.clone(),
                    meta: vec![("workspace", encoded.clone()), ("subject", encoded.clone())],
                },
            ),
        ] {
            let code = err.code();
            let reason = err.reason();
            let status = Status::from(err);
            assert!(
                trailer_size(&status) <= MAX_TRAILER_BYTES,
                "{what}: {} bytes",
                trailer_size(&status)
            );
            assert!(wire_message_len(&status) <= MAX_MESSAGE_BYTES, "{what}");
            assert!(status.message().ends_with('…'), "{what}");
            assert_eq!(status.code(), code, "{what}");
            let info = status.get_details_error_info().expect("ErrorInfo");
            assert_eq!(info.reason, reason.as_str(), "{what}");
            assert_eq!(info.domain, ERROR_DOMAIN, "{what}");
            let got = violations(&status);
            assert!(got.len() <= MAX_VIOLATIONS, "{what}");
            assert_eq!(got.is_empty(), code == Code::NotFound, "{what}");
        }
    }

    #[test]
    fn messages_are_cut_on_their_encoded_length() {
        for (message, cut) in [
            ("plain".to_string(), false),
            ("a".repeat(MAX_MESSAGE_BYTES), false),
            ("a".repeat(MAX_MESSAGE_BYTES + 1), true),
            (" ".repeat(MAX_MESSAGE_BYTES / 3), false),
            (" ".repeat(MAX_MESSAGE_BYTES / 3 + 1), true),
            ("é".repeat(MAX_MESSAGE_BYTES / 6 + 1), true),
        ] {
            let status = Status::from(Error::denied(message.clone()));
            let len = message.chars().count();
            assert!(wire_message_len(&status) <= MAX_MESSAGE_BYTES, "{len}");
            assert_eq!(status.message() != message, cut, "{len}");
        }
    }
}
