//! The name rules of `queueserver::idict::name`, applied at compile time.
//!
//! The same rules as `queueserver::idict::check_name`, restated here because a proc-macro
//! crate cannot call its runtime crate. The generated code also asserts each name with
//! `check_name` in a constant, so a name this module let through by mistake would still
//! fail to compile.

/// The longest name, in bytes (`queueserver::idict::MAX_NAME_LEN`).
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Why `name` is not a valid key name, or `None` when it is.
pub(crate) fn problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a key name cannot be empty".into());
    }
    if name.starts_with('@') {
        return Some("a key name starting with `@` is reserved (`@snapshot`)".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
    {
        return Some(format!(
            "{c:?} is not allowed in a key name: use ASCII letters, digits, `_`, `-`, `.`, and `/` between chunks"
        ));
    }
    if name.split('/').any(str::is_empty) {
        return Some("a key name has no empty `/`-chunk, and no leading or trailing `/`".into());
    }
    if name.split('/').any(|chunk| chunk == "." || chunk == "..") {
        return Some("a `/`-chunk of a key name is neither `.` nor `..`".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("a key name is at most {MAX_NAME_LEN} bytes"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::problem;
    use queueserver::idict::check_name;

    /// Every text from a small alphabet up to four characters long, and a few more: this
    /// module and the core's `check_name` must agree on each.
    #[test]
    fn agrees_with_the_core() {
        let alphabet = ['a', '0', '_', '-', '.', '/', '@', '*', ' ', 'é'];
        let mut texts = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for text in &frontier {
                for c in alphabet {
                    next.push(format!("{text}{c}"));
                }
            }
            texts.extend(next.iter().cloned());
            frontier = next;
        }
        texts.extend(["a".repeat(64), "a".repeat(65), "a/".repeat(32) + "a"]);
        for text in &texts {
            assert_eq!(
                problem(text).is_none(),
                check_name(text).is_ok(),
                "{text:?}: derive says {:?}, core says {:?}",
                problem(text),
                check_name(text)
            );
        }
    }
}
