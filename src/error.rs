//! The one error type of the service: every failure a caller can see, with the gRPC code,
//! the `ErrorInfo` reason and the `google.rpc` details it travels with.

use std::collections::HashMap;

use sea_orm::{DbErr, RuntimeErr, SqlErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

/// The `ErrorInfo.domain` of every error this service answers.
pub const ERROR_DOMAIN: &str = "workspaced";

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
    WorkspaceNotEmpty,
    WorkspaceArchived,
    BuiltInWorkspace,
    MemberNotFound,
    MemberExists,
    PrincipalNotFound,
    LastAdmin,
    ResourceNotFound,
    EtagMismatch,
    DatabaseUnavailable,
    Overloaded,
    RequestTimeout,
    RequestTooLarge,
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
            Reason::WorkspaceNotEmpty => "WORKSPACE_NOT_EMPTY",
            Reason::WorkspaceArchived => "WORKSPACE_ARCHIVED",
            Reason::BuiltInWorkspace => "BUILT_IN_WORKSPACE",
            Reason::MemberNotFound => "MEMBER_NOT_FOUND",
            Reason::MemberExists => "MEMBER_EXISTS",
            Reason::PrincipalNotFound => "PRINCIPAL_NOT_FOUND",
            Reason::LastAdmin => "LAST_ADMIN",
            Reason::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Reason::Overloaded => "OVERLOADED",
            Reason::RequestTimeout => "REQUEST_TIMEOUT",
            Reason::RequestTooLarge => "REQUEST_TOO_LARGE",
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
    #[error("{0}")]
    PermissionDenied(String),
    /// The named thing does not exist.
    #[error("{message}")]
    NotFound {
        /// Which kind of thing is missing.
        reason: Reason,
        /// Which one is missing.
        message: String,
    },
    /// The thing to create exists already.
    #[error("{message}")]
    AlreadyExists {
        /// Which kind of thing exists.
        reason: Reason,
        /// Which one exists.
        message: String,
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
    /// A bug or an unexpected database failure; logged once and answered opaquely.
    #[error("internal error")]
    Internal(String),
}

fn describe(fields: &[BadField]) -> String {
    fields
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

    /// The workspace named `name` does not exist.
    pub fn workspace_not_found(name: &str) -> Self {
        Error::NotFound {
            reason: Reason::WorkspaceNotFound,
            message: format!("workspace \"{name}\" not found"),
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
        }
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::EtagMismatch => Code::Aborted,
            Error::DatabaseUnavailable(_) | Error::Overloaded(_) => Code::Unavailable,
            Error::RequestTimeout(_) => Code::DeadlineExceeded,
            Error::RequestTooLarge(_) => Code::ResourceExhausted,
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
            Error::PermissionDenied(_) => Reason::PermissionDenied,
            Error::EtagMismatch => Reason::EtagMismatch,
            Error::DatabaseUnavailable(_) => Reason::DatabaseUnavailable,
            Error::Overloaded(_) => Reason::Overloaded,
            Error::RequestTimeout(_) => Reason::RequestTimeout,
            Error::RequestTooLarge(_) => Reason::RequestTooLarge,
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
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_connection_error(e) =>
            {
                Error::DatabaseUnavailable(err.to_string())
            }
            _ => Error::Internal(err.to_string()),
        }
    }
}

/// Whether a driver error means the database cannot be reached, as opposed to a bad query.
fn is_connection_error(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match err {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        // PostgreSQL's class 08 (connection exception) and 57P0x (server shutting down);
        // SQLite's BUSY (5, and its extended 261 and 517) and LOCKED (6) after the busy
        // timeout: the database cannot take the request now.
        E::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57P0") || matches!(&*c, "5" | "6" | "261" | "517")
        }),
        _ => false,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            err.reason().as_str(),
            ERROR_DOMAIN,
            HashMap::<String, String>::new(),
        );
        let message = match &err {
            Error::InvalidArgument(fields) => {
                details.set_bad_request(
                    fields
                        .iter()
                        .map(|f| FieldViolation::new(&f.field, &f.description))
                        .collect::<Vec<_>>(),
                );
                err.to_string()
            }
            Error::FailedPrecondition { violations, .. } if !violations.is_empty() => {
                details.set_precondition_failure(
                    violations
                        .iter()
                        .map(|v| PreconditionViolation::new(&v.kind, &v.subject, &v.description))
                        .collect::<Vec<_>>(),
                );
                err.to_string()
            }
            Error::DatabaseUnavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                err.to_string()
            }
            Error::Internal(cause) => {
                // Logged once here, at the boundary; the caller gets no internals.
                tracing::error!(%cause, "internal error");
                err.to_string()
            }
            _ => err.to_string(),
        };
        Status::with_error_details(err.code(), message, details)
    }
}
