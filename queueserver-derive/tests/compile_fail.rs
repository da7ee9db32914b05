//! What `#[derive(IDict)]` refuses, and how it says so: each case in `ui/fail/` must fail
//! to compile with the error in its `.stderr` file, pointing at the offending field or
//! attribute. `ui/pass/` holds code as strict as the core that must compile.
//!
//! The expected messages come from one compiler version: regenerate them with
//! `TRYBUILD=overwrite cargo test -p queueserver-derive` after a toolchain update, and read
//! the diff.

#[test]
#[cfg_attr(miri, ignore = "runs the compiler")]
fn misuse_is_a_compile_error_at_the_right_place() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
