//! Every reason the operator can put in a PodIamRole's `Ready` condition (and its Warning
//! Events), in one list. The code names reasons only through [`Reason`], so the docs and
//! tests that iterate over [`Reason::ALL`] see exactly what the code can set.

/// Declares the enum, its string form and `ALL` from one list, so they cannot drift.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$name,)*];

            /// The reason as it appears in the status and in Events.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    /// Role, permissions and annotation match the spec.
    Synced,
    InvalidSpec,
    PolicyNotAllowed,
    RoleConflict,
    ServiceAccountNotFound,
    ServiceAccountInUse,
    ServiceAccountAnnotationConflict,
    AwsConfigConflict,
    CleanupBlocked,
    ObservedRoleNotFound,
    ObservedRoleNotTrusted,
    AccessDenied,
    IamRejected,
    DeleteConflict,
    IamUnavailable,
    OidcProviderNotFound,
    OidcProviderUrlMismatch,
    OidcProviderMissingAudience,
    OidcProviderClientIdLimit,
    OidcProviderThumbprintStale,
    OidcProviderThumbprintUnavailable,
    OidcProviderCheckFailed,
    OidcProviderUpdateFailed,
    AccountNotFound,
    AccountNotAllowed,
    AccountAssumeFailed,
}

impl Reason {
    /// The reason named `text`, if the operator can set it.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
        assert_eq!(Reason::parse("NotAReason"), None);
    }
}
