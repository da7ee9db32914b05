//! Step two: what was read must make an IDict. Every error points at the offending item.

use crate::ast::{Field, Input};
use crate::name;
use proc_macro2::Span;
use syn::{Error, Ident, Result};

impl Input<'_> {
    /// Checks the input; on failure, every problem found, each at its own span.
    pub(crate) fn validate(&self) -> Result<()> {
        let mut errors: Option<Error> = None;
        let mut fail = |error: Error| match &mut errors {
            Some(all) => all.combine(error),
            None => errors = Some(error),
        };

        if !self.generics.params.is_empty() || self.generics.where_clause.is_some() {
            fail(Error::new_spanned(
                self.generics,
                "#[derive(IDict)] does not handle generic structs: the key and value enums it \
                 generates are concrete; implement IDict by hand, or derive it on a concrete struct",
            ));
        }

        let keyed: Vec<&Field<'_>> = self.keyed().collect();
        if keyed.is_empty() {
            fail(Error::new(
                self.ident.span(),
                "#[derive(IDict)] needs at least one field that is not #[idict(skip)]",
            ));
        }
        let mut seen: Vec<(String, &Field<'_>)> = Vec::new();
        let mut variants: Vec<(String, &Field<'_>)> = Vec::new();
        for field in &keyed {
            let (name, span) = field.name();
            if let Some(problem) = name::problem(&name) {
                let message = match &field.attrs.rename {
                    Some(_) => format!("bad key name {name:?}: {problem}"),
                    None => format!(
                        "the field name {name:?} is not a valid key name: {problem}; give it \
                         one with #[idict(rename = \"..\")]"
                    ),
                };
                fail(Error::new(span, message));
            }
            if let Some((_, first)) = seen.iter().find(|(other, _)| *other == name) {
                fail(Error::new(
                    span,
                    format!(
                        "duplicate key name {name:?}: field `{}` has it already",
                        first.ident
                    ),
                ));
            } else {
                seen.push((name, field));
            }
            let variant = field.variant().to_string();
            if let Some((_, first)) = variants.iter().find(|(other, _)| *other == variant) {
                fail(Error::new(
                    field.ident.span(),
                    format!(
                        "fields `{}` and `{}` would both be the key variant `{variant}`; rename one of the fields",
                        first.ident, field.ident
                    ),
                ));
            } else {
                variants.push((variant, field));
            }
        }
        for field in &self.fields {
            if let (Some(rename), Some(skip)) = (&field.attrs.rename, field.attrs.skip) {
                let _ = rename;
                fail(Error::new(
                    skip,
                    "a skipped field has no key, so #[idict(rename)] means nothing on it",
                ));
            }
        }
        errors.map_or(Ok(()), Err)
    }

    /// The fields that are keys, in declaration order.
    pub(crate) fn keyed(&self) -> impl Iterator<Item = &Field<'_>> {
        self.fields.iter().filter(|f| f.attrs.skip.is_none())
    }
}

impl Field<'_> {
    /// The key's name and the span to blame for it: the rename's string, or the field.
    pub(crate) fn name(&self) -> (String, Span) {
        match &self.attrs.rename {
            Some(rename) => (rename.value(), rename.span()),
            None => (unraw(self.ident), self.ident.span()),
        }
    }

    /// The key and value enums' variant for this field: the field name in `PascalCase`.
    pub(crate) fn variant(&self) -> Ident {
        let mut out = String::new();
        let mut upper = true;
        for c in unraw(self.ident).chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(0, 'F');
        }
        if out == "Self" {
            // `self_` would make the keyword `Self`, which cannot name a variant.
            out.push('_');
        }
        Ident::new(&out, self.ident.span())
    }
}

/// A field's name without `r#`.
fn unraw(ident: &Ident) -> String {
    let text = ident.to_string();
    text.strip_prefix("r#").map_or(text.clone(), str::to_owned)
}
