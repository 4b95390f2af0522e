//! Error statuses carrying google.rpc error details (`BadRequest`,
//! `PreconditionFailure`) in `grpc-status-details-bin`, so the gateway has
//! structured details to pass on to REST clients.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

/// INVALID_ARGUMENT with a `google.rpc.BadRequest` listing every violation.
pub(crate) fn invalid_argument(
    message: impl Into<String>,
    violations: Vec<FieldViolation>,
) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(violations),
    )
}

/// INVALID_ARGUMENT for a single bad field, named by its path in the request
/// ("page_token", "user.email").
pub(crate) fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    invalid_argument(
        format!("invalid {field}: {description}"),
        vec![FieldViolation::new(field, description)],
    )
}

/// FAILED_PRECONDITION with a `google.rpc.PreconditionFailure` holding one
/// violation.
pub(crate) fn failed_precondition(
    message: impl Into<String>,
    violation: PreconditionViolation,
) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_precondition_failure(vec![violation]),
    )
}
