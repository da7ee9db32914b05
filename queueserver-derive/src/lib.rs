//! `#[derive(IDict)]` for [`queueserver`](https://docs.rs/queueserver): a struct with named
//! fields becomes an `IDict` whose keys are a generated enum with names.
//!
//! Use it through `queueserver` with its `derive` feature, as `use queueserver::IDict;`
//! (the trait and the derive together); the documentation of the derive is there.
//!
//! The macro works in three steps: `ast` reads the struct and its `#[idict(..)]`
//! attributes, `valid` checks them (every error points at the offending field or
//! attribute), and `expand` writes the code. The generated code is `no_std`, has no
//! `unsafe`, and names the core crate by path (`::queueserver`, or `#[idict(crate = "..")]`).

#![forbid(unsafe_code)]

extern crate proc_macro;

mod ast;
mod expand;
mod name;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `queueserver::IDict` for a struct with named fields; documented in `queueserver`.
#[proc_macro_derive(IDict, attributes(idict))]
pub fn derive_idict(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    ast::Input::from_syn(&input)
        .and_then(|input| {
            input.validate()?;
            Ok(expand::derive(&input))
        })
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
