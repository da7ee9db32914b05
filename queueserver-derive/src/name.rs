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
