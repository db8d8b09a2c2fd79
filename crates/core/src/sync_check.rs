//! Pure: how much IAM a reconcile of a live PodIamRole needs. One decision from what
//! the operator already knows (its memo of the last reconcile, the status a previous
//! process wrote, the bulk listing, the call budget) to: nothing, a later retry, a
//! deferred check, or converging with IAM, with or without reading the role first.

use crate::snapshot::Drift;

/// What the memo holds for the object at this generation and guardrails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// IAM matched the spec, recently enough to trust without a look.
    Synced,
    /// IAM failed, and its retry time has not come.
    Failed,
    /// Cleanup of an earlier generation's role was done: converge afresh.
    CleanedUp,
    /// Nothing that still holds.
    Nothing,
}

/// Why a role the memo does not vouch for may still be in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// This process synced it, longer ago than the memo trusts: a drift check is due.
    SyncExpired,
    /// The status of this generation says Ready: a previous process synced it.
    SyncedBeforeStart,
}

/// Everything the decision looks at. `listing` and `spare_budget` matter only with a
/// hint; `name_free` only when converging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub known: Known,
    pub hint: Option<Hint>,
    /// What the bulk listing says of the role; `None` when there is no listing.
    pub listing: Option<Drift>,
    /// Whether the call budget has room for a drift check's reads.
    pub spare_budget: bool,
    /// A new PodIamRole (never got as far as IAM, adopts nothing) whose name the last
    /// finished listing does not have: creating it without a read first is safe, since
    /// CreateRole refuses a name taken since.
    pub name_free: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// IAM is in sync: no call. `remember`: the memo learns it (it did not hold it).
    InSync { remember: bool },
    /// The last failure's retry time has not come: no call.
    RetryLater,
    /// A drift check with no listing, while the budget is spoken for: it can wait, work
    /// that changes IAM cannot.
    DeferCheck,
    /// Bring IAM in line, reading the role first or not.
    Converge { read_first: bool },
}

pub fn decide(facts: &Facts) -> Decision {
    match facts.known {
        Known::Synced => return Decision::InSync { remember: false },
        Known::Failed => return Decision::RetryLater,
        Known::CleanedUp => return converge(facts),
        Known::Nothing => {}
    }
    let Some(hint) = facts.hint else {
        return converge(facts);
    };
    match (facts.listing, hint) {
        // The listing shows no drift, or cannot tell yet after a sync of this process.
        (Some(Drift::None), _) | (Some(Drift::Unknown), Hint::SyncExpired) => {
            Decision::InSync { remember: true }
        }
        (Some(Drift::Suspected | Drift::Unknown), _) => converge(facts),
        (None, _) if !facts.spare_budget => Decision::DeferCheck,
        (None, _) => converge(facts),
    }
}

fn converge(facts: &Facts) -> Decision {
    Decision::Converge {
        read_first: !facts.name_free,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    fn facts(known: Known, hint: Option<Hint>, listing: Option<Drift>) -> Facts {
        Facts {
            known,
            hint,
            listing,
            spare_budget: true,
            name_free: false,
        }
    }

    #[test]
    fn the_table() {
        use Hint::*;
        use Known::*;
        let table = [
            // A memo that holds decides alone.
            (facts(Synced, None, None), InSync { remember: false }),
            (facts(Failed, None, None), RetryLater),
            (facts(CleanedUp, None, None), Converge { read_first: true }),
            // Nothing known and no hint: a new object or a changed spec.
            (facts(Nothing, None, None), Converge { read_first: true }),
            (
                facts(Nothing, None, Some(Drift::None)),
                Converge { read_first: true },
            ),
            // An expired sync of this process: the listing decides.
            (
                facts(Nothing, Some(SyncExpired), Some(Drift::None)),
                InSync { remember: true },
            ),
            (
                facts(Nothing, Some(SyncExpired), Some(Drift::Unknown)),
                InSync { remember: true },
            ),
            (
                facts(Nothing, Some(SyncExpired), Some(Drift::Suspected)),
                Converge { read_first: true },
            ),
            (
                facts(Nothing, Some(SyncExpired), None),
                Converge { read_first: true },
            ),
            // A sync of a previous process: a listing that cannot tell is not enough.
            (
                facts(Nothing, Some(SyncedBeforeStart), Some(Drift::None)),
                InSync { remember: true },
            ),
            (
                facts(Nothing, Some(SyncedBeforeStart), Some(Drift::Unknown)),
                Converge { read_first: true },
            ),
            (
                facts(Nothing, Some(SyncedBeforeStart), Some(Drift::Suspected)),
                Converge { read_first: true },
            ),
        ];
        for (facts, decision) in table {
            assert_eq!(decide(&facts), decision, "{facts:?}");
        }
    }

    #[test]
    fn a_check_without_a_listing_waits_for_spare_budget() {
        for hint in [Hint::SyncExpired, Hint::SyncedBeforeStart] {
            let busy = Facts {
                spare_budget: false,
                ..facts(Known::Nothing, Some(hint), None)
            };
            assert_eq!(decide(&busy), DeferCheck);
            // With a listing, the budget does not matter.
            let listed = Facts {
                listing: Some(Drift::Suspected),
                ..busy
            };
            assert_eq!(decide(&listed), Converge { read_first: true });
        }
        // Without a hint there is no check to defer.
        let busy = Facts {
            spare_budget: false,
            ..facts(Known::Nothing, None, None)
        };
        assert_eq!(decide(&busy), Converge { read_first: true });
    }

    #[test]
    fn a_free_name_is_created_without_a_read() {
        let free = Facts {
            name_free: true,
            ..facts(Known::Nothing, None, None)
        };
        assert_eq!(decide(&free), Converge { read_first: false });
        let cleaned = Facts {
            known: Known::CleanedUp,
            ..free
        };
        assert_eq!(decide(&cleaned), Converge { read_first: false });
        // A memo that holds never converges, free name or not.
        let synced = Facts {
            known: Known::Synced,
            ..free
        };
        assert_eq!(decide(&synced), InSync { remember: false });
    }
}
