//! AWS SDK errors as the operator reports them: an IAM call's failure as an [`IamError`]
//! (its code goes through the one table, `irsa_core::failure`), and any AWS error as a
//! short message quoting the service's own code and message, bounded for statuses and Events.

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use irsa_core::status::truncated;

use super::IamError;

/// An IAM call's failure, as the reconciler acts on it.
pub(super) fn classify<E, R>(operation: &'static str, error: &SdkError<E, R>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = match error {
        // A timeout is not retried by the budget: the attempt already waited its full time.
        SdkError::TimeoutError(_) => "Timeout",
        _ => error
            .code()
            .filter(|code| !code.is_empty())
            .unwrap_or("Unavailable"),
    };
    // The code stays apart for the failure table; the message is what IAM said (or, for
    // a transport error, a short display), bounded like every AWS message.
    let message = match error.message() {
        Some(message) => truncated(message, AWS_MESSAGE_LIMIT),
        None => aws_error_message(error),
    };
    IamError::new(operation, code, message)
}

/// The most of an AWS error a status or Event message quotes: the service's message is
/// short; an SDK's debug dump is not (and made Events too long for the API server).
pub const AWS_MESSAGE_LIMIT: usize = 512;

/// How any AWS SDK error (IAM, STS, a credentials provider's) reads in a status or Event:
/// `Code: message` as the service said it, or, when no service answered (network,
/// timeout), the error's display with its causes; at most [`AWS_MESSAGE_LIMIT`] bytes.
pub fn aws_error_message(error: &(dyn std::error::Error + 'static)) -> String {
    let text = match chain(error).find_map(service_said) {
        Some((code, Some(message))) => format!("{code}: {message}"),
        Some((code, None)) => code,
        None => {
            let mut parts: Vec<String> = Vec::new();
            for cause in chain(error) {
                let part = cause.to_string();
                // Wrappers often repeat their cause's text.
                if !parts.iter().any(|p| p.contains(&part)) {
                    parts.push(part);
                }
            }
            parts.join(": ")
        }
    };
    truncated(&text, AWS_MESSAGE_LIMIT)
}

/// The error and its causes, outermost first.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// The service's own error code and message, if this link of the chain carries them. A
/// chain is only typed as `dyn Error`, so the SDK error types it can hold are named here.
fn service_said(link: &(dyn std::error::Error + 'static)) -> Option<(String, Option<String>)> {
    use aws_sdk_sts::operation::{
        assume_role::AssumeRoleError, get_caller_identity::GetCallerIdentityError,
    };
    fn meta<'a, E: ProvideErrorMetadata + std::error::Error + 'static>(
        link: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a dyn ProvideErrorMetadata> {
        link.downcast_ref::<E>()
            .map(|e| e as &dyn ProvideErrorMetadata)
    }
    let meta = meta::<aws_sdk_sts::error::SdkError<AssumeRoleError>>(link)
        .or_else(|| meta::<aws_sdk_sts::error::SdkError<GetCallerIdentityError>>(link))
        .or_else(|| meta::<AssumeRoleError>(link))
        .or_else(|| meta::<GetCallerIdentityError>(link))
        .or_else(|| meta::<aws_sdk_iam::error::ErrorMetadata>(link))?;
    let code = meta.code()?.to_string();
    Some((code, meta.message().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use std::{error::Error, fmt};

    use aws_sdk_sts::operation::assume_role::AssumeRoleError;

    use super::*;

    /// A wrapper whose display is an SDK-sized dump, as a credentials provider's is.
    #[derive(Debug)]
    struct Wrapped(Box<dyn Error + 'static>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "provider error: {}", "raw response dump ".repeat(200))
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn a_service_error_is_quoted_as_code_and_message() {
        let denied =
            "User: arn:aws:sts::1:assumed-role/op/x is not authorized to perform: sts:AssumeRole";
        let sts = AssumeRoleError::generic(
            aws_sdk_sts::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message(denied)
                .build(),
        );
        let error = Wrapped(Box::new(sts));
        assert_eq!(aws_error_message(&error), format!("AccessDenied: {denied}"));
    }

    #[test]
    fn a_transport_error_is_its_short_display_and_everything_is_bounded() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(aws_error_message(&refused), "refused");
        let error = Wrapped(Box::new(refused));
        let message = aws_error_message(&error);
        assert!(message.len() <= AWS_MESSAGE_LIMIT, "{}", message.len());
        assert!(message.starts_with("provider error: raw response dump"));
        assert!(message.ends_with('…'), "{message}");
        let long = AssumeRoleError::generic(
            aws_sdk_sts::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("é".repeat(2_000))
                .build(),
        );
        let message = aws_error_message(&long);
        assert!(message.starts_with("AccessDenied: éé"), "{message}");
        assert!(message.len() <= AWS_MESSAGE_LIMIT);
    }
}
