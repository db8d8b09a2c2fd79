//! Pure: role chains (`spec.roleChain`) as AWS config profiles, the `sts:AssumeRole`
//! grant they need, and the trust statement (`spec.trustedRoleArns`) that lets another
//! role assume this one.
//!
//! The pod's SDK resolves a profile by assuming the `default` profile's role with its
//! web identity token, then `role_arn` with those credentials (`source_profile`), as the
//! AWS CLI, botocore and the other SDKs read config files.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::naming;
use irsa_api::ChainLink;

/// The ServiceAccount annotation naming the ConfigMap that holds the rendered file; the
/// pod identity webhook mounts that ConfigMap and sets `AWS_CONFIG_FILE`.
pub const CONFIG_MAP_ANNOTATION: &str = "irsa.dev/aws-config";
/// The ConfigMap key, and so the file name in the mounted directory.
pub const CONFIG_KEY: &str = "config";
/// The profile that is the PodIamRole's own role; chain profiles may not take it.
pub const DEFAULT_PROFILE: &str = "default";
/// Kubernetes' limit on object names (DNS subdomains).
const MAX_OBJECT_NAME_LEN: usize = 253;
const CONFIG_MAP_SUFFIX: &str = "-aws-config";

/// The label every such ConfigMap carries; with the name suffix, the admission policy
/// (config/rbac/confinement.yaml) lets the operator write only these ConfigMaps.
pub const CONFIG_MAP_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "irsa-operator");

/// The ConfigMap of a PodIamRole named `name`: `<name>-aws-config`, the name cut and hashed
/// when longer than Kubernetes allows. The suffix always stays: the policy requires it.
pub fn config_map_name(name: &str) -> String {
    let fitted = naming::fit(
        name.to_string(),
        MAX_OBJECT_NAME_LEN - CONFIG_MAP_SUFFIX.len(),
    );
    format!("{fitted}{CONFIG_MAP_SUFFIX}")
}

/// Checks what the CRD schema checks too, for objects stored before it did: a clear
/// message, and nothing written.
pub fn validate(chain: &[ChainLink]) -> Result<(), String> {
    let mut profiles = BTreeSet::new();
    for (index, link) in chain.iter().enumerate() {
        let at = format!("spec.roleChain[{index}]");
        let profile = &link.profile;
        let valid = !profile.is_empty()
            && profile.len() <= 64
            && profile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!(
                "{at}.profile `{profile}` must be 1 to 64 letters, digits or _.-"
            ));
        }
        if profile == DEFAULT_PROFILE {
            return Err(format!(
                "{at}.profile `default` is this PodIamRole's own role; name the profile otherwise"
            ));
        }
        if !profiles.insert(profile.as_str()) {
            return Err(format!("{at}.profile `{profile}` is listed twice"));
        }
        validate_role_arn(&link.role_arn).map_err(|e| format!("{at}.roleArn: {e}"))?;
        if let Some(session) = &link.session_name {
            let valid = (2..=64).contains(&session.len())
                && session
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
            if !valid {
                return Err(format!(
                    "{at}.sessionName `{session}` must be 2 to 64 letters, digits or _+=,.@-"
                ));
            }
        }
        if let Some(duration) = link.duration_seconds
            && !(900..=3600).contains(&duration)
        {
            return Err(format!(
                "{at}.durationSeconds {duration} must be between 900 and 3600: AWS caps chained sessions at one hour"
            ));
        }
    }
    Ok(())
}

/// A literal IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path and name>`, no
/// wildcards, since a trust principal or chain target must name exactly one role.
pub fn validate_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(),
    ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
        && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|rest| {
            !rest.is_empty()
                && rest.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@/-".contains(c))
        }));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{arn}` is not a literal IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        ))
    }
}

/// The AWS config file: `default` is `role_arn` through the token file, each link a
/// profile assumed from it.
pub fn render(source: &str, role_arn: &str, token_file: &str, chain: &[ChainLink]) -> String {
    let mut text = format!(
        "# Rendered by irsa-operator for PodIamRole {source}; edits are overwritten.\n\
         [{DEFAULT_PROFILE}]\n\
         role_arn = {role_arn}\n\
         web_identity_token_file = {token_file}\n"
    );
    for link in chain {
        text.push_str(&format!(
            "\n[profile {}]\nsource_profile = {DEFAULT_PROFILE}\nrole_arn = {}\n",
            link.profile, link.role_arn
        ));
        if let Some(session) = &link.session_name {
            text.push_str(&format!("role_session_name = {session}\n"));
        }
        if let Some(duration) = link.duration_seconds {
            text.push_str(&format!("duration_seconds = {duration}\n"));
        }
    }
    text
}

/// The statement granting `sts:AssumeRole` on exactly the chain's targets; `None`
/// without a chain.
pub fn grant(chain: &[ChainLink]) -> Option<Value> {
    let targets: BTreeSet<&str> = chain.iter().map(|link| link.role_arn.as_str()).collect();
    (!targets.is_empty()).then(|| {
        json!({
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": targets.into_iter().collect::<Vec<_>>(),
        })
    })
}

/// `policy` with the chain's grant as one more statement: the role keeps a single
/// inline policy, so IAM's quota for a role's inline policies counts both together.
pub fn with_grant(policy: Option<&Value>, chain: &[ChainLink]) -> Option<Value> {
    let Some(grant) = grant(chain) else {
        return policy.cloned();
    };
    let mut document = policy
        .cloned()
        .unwrap_or_else(|| json!({"Version": "2012-10-17", "Statement": []}));
    let statements = match document["Statement"].take() {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        single => vec![single],
    };
    document["Statement"] = Value::Array(statements.into_iter().chain([grant]).collect());
    Some(document)
}

/// The trust statement that lets `trusted` roles assume this one; `None` when empty.
pub fn trust_statement(trusted: &[String]) -> Result<Option<Value>, String> {
    for (index, arn) in trusted.iter().enumerate() {
        validate_role_arn(arn).map_err(|e| format!("spec.trustedRoleArns[{index}]: {e}"))?;
    }
    let principals: BTreeSet<&str> = trusted.iter().map(String::as_str).collect();
    Ok((!principals.is_empty()).then(|| {
        json!({
            "Effect": "Allow",
            "Principal": {"AWS": principals.into_iter().collect::<Vec<_>>()},
            "Action": "sts:AssumeRole",
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::chain_link;

    const SOURCE: &str = "arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments";
    const TOKEN: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

    #[test]
    fn renders_the_profiles_exactly() {
        let mut reports = chain_link("reports", "arn:aws:iam::444455556666:role/reports");
        reports.session_name = Some("payments".into());
        reports.duration_seconds = Some(900);
        let chain = [
            reports,
            chain_link("audit", "arn:aws:iam::777788889999:role/team/audit"),
        ];
        assert_eq!(
            render("shop/payments", SOURCE, TOKEN, &chain),
            "# Rendered by irsa-operator for PodIamRole shop/payments; edits are overwritten.\n\
             [default]\n\
             role_arn = arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments\n\
             web_identity_token_file = /var/run/secrets/eks.amazonaws.com/serviceaccount/token\n\
             \n\
             [profile reports]\n\
             source_profile = default\n\
             role_arn = arn:aws:iam::444455556666:role/reports\n\
             role_session_name = payments\n\
             duration_seconds = 900\n\
             \n\
             [profile audit]\n\
             source_profile = default\n\
             role_arn = arn:aws:iam::777788889999:role/team/audit\n"
        );
        assert_eq!(
            render("shop/payments", SOURCE, TOKEN, &[]),
            "# Rendered by irsa-operator for PodIamRole shop/payments; edits are overwritten.\n\
             [default]\nrole_arn = arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments\n\
             web_identity_token_file = /var/run/secrets/eks.amazonaws.com/serviceaccount/token\n"
        );
    }

    #[test]
    fn the_grant_names_exactly_the_targets_once() {
        let chain = [
            chain_link("b", "arn:aws:iam::444455556666:role/b"),
            chain_link("a", "arn:aws:iam::444455556666:role/a"),
            chain_link("a-again", "arn:aws:iam::444455556666:role/a"),
        ];
        assert_eq!(
            grant(&chain),
            Some(
                json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": [
                "arn:aws:iam::444455556666:role/a", "arn:aws:iam::444455556666:role/b"]})
            )
        );
        assert_eq!(grant(&[]), None);
    }

    #[test]
    fn the_grant_joins_the_policy_as_one_more_statement() {
        let chain = [chain_link("a", "arn:aws:iam::444455556666:role/a")];
        let single = json!({"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}});
        let merged = with_grant(Some(&single), &chain).unwrap();
        assert_eq!(
            merged["Statement"],
            json!([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                   grant(&chain).unwrap()])
        );
        assert_eq!(
            with_grant(None, &chain),
            Some(json!({"Version": "2012-10-17", "Statement": [grant(&chain).unwrap()]}))
        );
        assert_eq!(with_grant(Some(&single), &[]), Some(single));
        assert_eq!(with_grant(None, &[]), None);
    }

    #[test]
    fn bad_links_are_refused_precisely() {
        let check = |link: ChainLink, expected: &str| {
            let err = validate(&[link]).unwrap_err();
            assert!(err.contains(expected), "got `{err}`, want `{expected}`");
        };
        let arn = "arn:aws:iam::444455556666:role/a";
        check(chain_link("default", arn), "is this PodIamRole's own role");
        check(chain_link("a b", arn), "letters, digits or _.-");
        check(chain_link("", arn), "must be 1 to 64");
        check(
            chain_link("a", "arn:aws:iam::444455556666:role/*"),
            "literal IAM role ARN",
        );
        check(chain_link("a", "*"), "spec.roleChain[0].roleArn");
        check(
            chain_link("a", "arn:aws:iam::4444:role/a"),
            "literal IAM role ARN",
        );
        check(
            chain_link("a", "arn:aws:s3:::bucket"),
            "literal IAM role ARN",
        );
        let mut short_session = chain_link("a", arn);
        short_session.session_name = Some("x".into());
        check(short_session, "sessionName `x`");
        let mut long = chain_link("a", arn);
        long.duration_seconds = Some(7200);
        check(long, "caps chained sessions at one hour");
        let twice = [chain_link("a", arn), chain_link("a", arn)];
        assert!(validate(&twice).unwrap_err().contains("listed twice"));
        assert_eq!(validate(&[chain_link("team.a_1-x", arn)]), Ok(()));
    }

    #[test]
    fn trust_statement_admits_exactly_the_listed_roles() {
        let arn = "arn:aws:iam::111122223333:role/irsa/prod/prod.shop.payments";
        assert_eq!(
            trust_statement(&[arn.into(), arn.into()]),
            Ok(Some(json!({"Effect": "Allow", "Principal": {"AWS": [arn]},
                "Action": "sts:AssumeRole"})))
        );
        assert_eq!(trust_statement(&[]), Ok(None));
        for bad in [
            "*",
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:role/*",
        ] {
            let err = trust_statement(&[bad.into()]).unwrap_err();
            assert!(err.starts_with("spec.trustedRoleArns[0]:"), "{err}");
        }
    }

    #[test]
    fn config_map_names_fit_kubernetes() {
        assert_eq!(config_map_name("payments"), "payments-aws-config");
        let long = config_map_name(&"a".repeat(253));
        assert_eq!(long.len(), 253);
        assert!(long.ends_with("-aws-config"), "{long}");
        assert_ne!(long, config_map_name(&"a".repeat(252)));
        let longest_kept = "a".repeat(MAX_OBJECT_NAME_LEN - CONFIG_MAP_SUFFIX.len());
        assert_eq!(
            config_map_name(&longest_kept),
            format!("{longest_kept}-aws-config")
        );
    }
}
