//! Deterministic IAM role names within IAM's limits.
//!
//! A derived name is `<prefix><cluster>.<namespace>.<name>`. Namespaces never contain a
//! dot and cluster names are checked to have none, so two different objects never map
//! to the same untruncated name. Names longer than IAM allows are cut and end in a hash
//! of the full name, so they stay unique and stable across restarts.

use sha2::{Digest, Sha256};

/// IAM's limit on role names.
pub const MAX_ROLE_NAME_LEN: usize = 64;
/// IAM's limit on paths.
const MAX_PATH_LEN: usize = 512;
/// Keeps names readable: the cluster name is repeated in every role name.
const MAX_CLUSTER_NAME_LEN: usize = 32;
const MAX_PREFIX_LEN: usize = 32;
/// Hex digits of the hash suffix on truncated names: 32 bits, ample for one account's roles.
const HASH_SUFFIX_LEN: usize = 8;

fn is_role_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if is_role_name_char(c) { c } else { '-' })
        .collect()
}

/// What every untruncated name derived in `namespace` starts with. No other
/// namespace's derived name can start with it, since namespaces contain no dot.
pub fn namespace_prefix(prefix: &str, cluster: &str, namespace: &str) -> String {
    sanitize(&format!("{prefix}{cluster}.{namespace}."))
}

/// The role name for a PodIamRole without a `roleName` override.
pub fn derive_role_name(prefix: &str, cluster: &str, namespace: &str, name: &str) -> String {
    fit(
        namespace_prefix(prefix, cluster, namespace) + &sanitize(name),
        MAX_ROLE_NAME_LEN,
    )
}

/// `full` if it has at most `max` characters (ASCII), else cut to end in a hash of it.
pub fn fit(full: String, max: usize) -> String {
    if full.len() <= max {
        return full;
    }
    let digest = hex::encode(Sha256::digest(full.as_bytes()));
    let keep = max - HASH_SUFFIX_LEN - 1;
    format!("{}-{}", &full[..keep], &digest[..HASH_SUFFIX_LEN])
}

pub fn validate_role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ROLE_NAME_LEN {
        return Err(format!(
            "role name `{name}` must be 1 to {MAX_ROLE_NAME_LEN} characters long"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !is_role_name_char(*c)) {
        return Err(format!(
            "role name `{name}` contains `{bad}`; IAM allows only letters, digits and _+=,.@-"
        ));
    }
    Ok(())
}

pub fn validate_cluster_name(cluster: &str) -> Result<(), String> {
    let ok_chars = cluster
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if cluster.is_empty() || cluster.len() > MAX_CLUSTER_NAME_LEN || !ok_chars {
        return Err(format!(
            "cluster name `{cluster}` must be 1 to {MAX_CLUSTER_NAME_LEN} letters, digits, `_` or `-`"
        ));
    }
    Ok(())
}

pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(is_role_name_char) {
        return Err(format!(
            "role name prefix `{prefix}` must be at most {MAX_PREFIX_LEN} of IAM's role name characters"
        ));
    }
    Ok(())
}

pub fn validate_role_path(path: &str) -> Result<(), String> {
    let printable = path.chars().all(|c| ('!'..='~').contains(&c));
    if !path.starts_with('/')
        || !path.ends_with('/')
        || path.contains("//")
        || path.len() > MAX_PATH_LEN
        || !printable
    {
        return Err(format!(
            "role path `{path}` must start and end with `/`, hold no empty segment or space, \
             and be at most {MAX_PATH_LEN} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_are_readable() {
        assert_eq!(
            derive_role_name("", "prod", "shop", "payments"),
            "prod.shop.payments"
        );
        assert_eq!(
            derive_role_name("team-", "prod", "shop", "payments"),
            "team-prod.shop.payments"
        );
    }

    #[test]
    fn long_names_are_truncated_with_a_stable_hash() {
        let name = "a".repeat(200);
        let derived = derive_role_name("", "prod", "shop", &name);
        assert_eq!(derived.len(), MAX_ROLE_NAME_LEN);
        assert!(derived.starts_with("prod.shop.aaaa"));
        assert_eq!(derived, derive_role_name("", "prod", "shop", &name));
        let other = derive_role_name("", "prod", "shop", &format!("{name}b"));
        assert_ne!(derived, other, "names sharing a long prefix must differ");
    }

    #[test]
    fn namespace_and_name_boundaries_do_not_collide() {
        assert_ne!(
            derive_role_name("", "c", "a-b", "c"),
            derive_role_name("", "c", "a", "b-c")
        );
    }

    #[test]
    fn validates_overrides() {
        assert!(validate_role_name("my-role_1+=,.@").is_ok());
        assert!(validate_role_name("").is_err());
        assert!(validate_role_name(&"x".repeat(65)).is_err());
        let err = validate_role_name("has space").unwrap_err();
        assert!(err.contains("` `"), "{err}");
    }

    #[test]
    fn validates_paths() {
        assert!(validate_role_path("/").is_ok());
        assert!(validate_role_path("/irsa/prod/").is_ok());
        assert!(validate_role_path("irsa/").is_err());
        assert!(validate_role_path("/irsa").is_err());
        assert!(validate_role_path("/a//b/").is_err());
        assert!(validate_role_path("/a b/").is_err());
        assert!(validate_role_path(&format!("/{}/", "a".repeat(511))).is_err());
    }

    proptest! {
        #[test]
        fn derived_names_are_always_valid(
            prefix in "[a-z-]{0,32}",
            cluster in "[A-Za-z0-9_-]{1,32}",
            namespace in "[a-z0-9-]{1,63}",
            name in "[a-z0-9.-]{1,253}",
        ) {
            let derived = derive_role_name(&prefix, &cluster, &namespace, &name);
            prop_assert!(validate_role_name(&derived).is_ok(), "{}", derived);
            prop_assert_eq!(&derived, &derive_role_name(&prefix, &cluster, &namespace, &name));
        }

        #[test]
        fn validation_never_panics(name in "\\PC{0,80}") {
            let _ = validate_role_name(&name);
            let _ = validate_role_path(&name);
            let _ = validate_cluster_name(&name);
        }
    }
}
