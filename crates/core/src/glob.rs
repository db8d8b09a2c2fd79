//! Pure: IAM's wildcard match, where `*` is any run of characters and `?` exactly one.

/// Whether `text` matches `pattern`, case-sensitive, as `StringLike` compares.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` and the text position it was last tried at, for backtracking.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, tried)) => {
                    p = star + 1;
                    t = tried + 1;
                    backtrack = Some((star, tried + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The same, ignoring case, as IAM compares action names.
pub fn matches_ignoring_case(pattern: &str, text: &str) -> bool {
    matches(&pattern.to_lowercase(), &text.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("a*c", "abc"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*", "a"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "axxbxxc"));
        assert!(!matches("a*c", "abcd"));
        assert!(!matches("a?c", "ac"));
    }

    #[test]
    fn case_counts_unless_ignored() {
        assert!(!matches("s3:Get*", "s3:getobject"));
        assert!(matches_ignoring_case("s3:Get*", "s3:getobject"));
    }
}
