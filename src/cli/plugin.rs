//! The binary is also kubectl's `irsa` plugin. kubectl finds a plugin as an executable named
//! `kubectl-irsa` on `PATH` (krew installs a link of that name) and runs it with the words
//! that follow `irsa`, so the subcommands and flags are the same; only the name in the help
//! differs. The name is taken from how the binary was started (argv\[0\]), so one binary
//! serves both ways and a release ships it once.

use std::{ffi::OsStr, path::Path};

/// The executable name kubectl looks for on `PATH` for `kubectl irsa`.
pub const PLUGIN_EXECUTABLE: &str = "kubectl-irsa";

/// The name to show in usage lines: `kubectl irsa` when the binary was started as the
/// plugin (`kubectl-irsa`, or `kubectl-irsa.exe`), `None` otherwise.
pub fn plugin_bin_name(argv0: &OsStr) -> Option<&'static str> {
    let file_name = Path::new(argv0).file_name()?.to_str()?;
    let stem = file_name.strip_suffix(".exe").unwrap_or(file_name);
    (stem == PLUGIN_EXECUTABLE).then_some("kubectl irsa")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_by_kubectl_through_a_link_on_path() {
        for argv0 in [
            "kubectl-irsa",
            "/home/me/.krew/bin/kubectl-irsa",
            "kubectl-irsa.exe",
        ] {
            assert_eq!(
                plugin_bin_name(OsStr::new(argv0)),
                Some("kubectl irsa"),
                "{argv0}"
            );
        }
    }

    #[test]
    fn started_as_the_operator() {
        for argv0 in [
            "irsa-operator",
            "/usr/local/bin/irsa-operator",
            "target/debug/irsa-operator",
            "kubectl-irsa-doctor",
            "kubectl",
            "",
        ] {
            assert_eq!(plugin_bin_name(OsStr::new(argv0)), None, "{argv0}");
        }
    }
}
