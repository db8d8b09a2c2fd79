//! `doctor`'s findings and how they print: one line per check, the fix under each
//! failure, or JSON for scripts. Pure.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not checked because an earlier link it needs failed.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            message: message.into(),
            fix: None,
        }
    }

    pub fn fail(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skip(name: &'static str, needs: &str) -> Self {
        Self {
            name,
            status: Status::Skip,
            message: format!("not checked: needs {needs}"),
            fix: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(target: String, checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        Self { target, ok, checks }
    }

    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = format!("doctor {}\n", self.target);
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            out += &format!("{status}  {:width$}  {}\n", check.name, check.message);
            if let Some(fix) = &check.fix {
                out += &format!("      {:width$}  fix: {fix}\n", "");
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        out += &if failed == 0 {
            "all checks passed\n".to_string()
        } else {
            format!("{failed} check(s) failed\n")
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json() {
        let report = Report::new(
            "sa/team/app".into(),
            vec![
                Check::pass("annotation", "has it"),
                Check::fail("role", "gone", "recreate it"),
                Check::skip("trust", "the role"),
            ],
        );
        assert!(!report.ok);
        assert_eq!(
            report.text(),
            "doctor sa/team/app\n\
             PASS  annotation  has it\n\
             FAIL  role        gone\n\
             \x20                 fix: recreate it\n\
             SKIP  trust       not checked: needs the role\n\
             1 check(s) failed\n"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][0].get("fix"), None);
        assert!(Report::new("x".into(), vec![Check::pass("a", "b")]).ok);
    }
}
