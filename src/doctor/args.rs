//! `irsa-operator doctor` flags and the target it names.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// What to check: `sa/NAME`, `pod/NAME` or `pir/NAME`.
    pub target: String,

    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// `text` (one line per check) or `json`.
    #[arg(short = 'o', long, default_value = "text")]
    pub output: Output,

    /// Extra CA certificates (PEM) to trust when reaching a private issuer.
    #[arg(long, env = "IRSA_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    ServiceAccount(String),
    Pod(String),
    PodIamRole(String),
}

impl Target {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = text
            .split_once('/')
            .filter(|(_, name)| !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| format!("`{text}` is not KIND/NAME, e.g. sa/app, pod/app-0, pir/app"))?;
        match kind.to_ascii_lowercase().as_str() {
            "sa" | "serviceaccount" => Ok(Target::ServiceAccount(name.into())),
            "pod" | "po" => Ok(Target::Pod(name.into())),
            "pir" | "podiamrole" => Ok(Target::PodIamRole(name.into())),
            other => Err(format!("unknown kind `{other}`: use sa, pod or pir")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("sa/app"),
            Ok(Target::ServiceAccount("app".into()))
        );
        assert_eq!(Target::parse("pod/app-0"), Ok(Target::Pod("app-0".into())));
        assert_eq!(
            Target::parse("PodIamRole/x"),
            Ok(Target::PodIamRole("x".into()))
        );
        for bad in ["app", "sa/", "deploy/x", "sa/a/b"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
