//! Step one: the struct and its `#[idict(..)]` attributes, read into plain data.
//!
//! Reading refuses what has no meaning at all (an unknown attribute, a value of the wrong
//! kind, an attribute given twice); `valid` then checks what is read.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, Ident, LitStr, Path, Result, Type};

/// The derive's input.
pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) attrs: StructAttrs,
    pub(crate) fields: Vec<Field<'a>>,
    /// The struct's generics, which the derive does not handle: kept to point at them.
    pub(crate) generics: &'a syn::Generics,
}

/// `#[idict(..)]` on the struct.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `crate = "path"`: where the core crate is, when not at `::queueserver`.
    pub(crate) krate: Option<Path>,
    /// `key = "Name"`: the key enum's name, instead of `<Struct>Key`.
    pub(crate) key: Option<Ident>,
    /// `value = "Name"`: the value enum's name, instead of `<Struct>Value`.
    pub(crate) value: Option<Ident>,
    /// `serde`: `Serialize` / `Deserialize` for the struct itself, with the span of the word.
    pub(crate) serde: Option<Span>,
}

/// One named field.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
}

/// `#[idict(..)]` on a field.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    /// `rename = "name"`.
    pub(crate) rename: Option<LitStr>,
    /// `skip`, with the span of the word.
    pub(crate) skip: Option<Span>,
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput) -> Result<Self> {
        let data = match &input.data {
            Data::Struct(data) => data,
            Data::Enum(data) => {
                return Err(Error::new(
                    data.enum_token.span,
                    "#[derive(IDict)] is for structs with named fields, not enums",
                ))
            }
            Data::Union(data) => {
                return Err(Error::new(
                    data.union_token.span,
                    "#[derive(IDict)] is for structs with named fields, not unions",
                ))
            }
        };
        let named = match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(fields) => {
                return Err(Error::new_spanned(
                    fields,
                    "#[derive(IDict)] needs named fields: their names are the keys' names",
                ))
            }
            Fields::Unit => {
                return Err(Error::new(
                    data.struct_token
                        .span
                        .join(input.ident.span())
                        .unwrap_or(input.ident.span()),
                    "#[derive(IDict)] needs a struct with named fields, not a unit struct",
                ))
            }
        };
        // Every attribute is read before failing, so that one build shows every problem.
        let mut errors: Option<Error> = None;
        let mut keep = |error: Error| match &mut errors {
            Some(all) => all.combine(error),
            None => errors = Some(error),
        };
        let attrs = StructAttrs::from_syn(&input.attrs).unwrap_or_else(|e| {
            keep(e);
            StructAttrs::default()
        });
        let mut fields = Vec::new();
        for field in &named.named {
            match FieldAttrs::from_syn(&field.attrs) {
                Ok(attrs) => fields.push(Field {
                    ident: field.ident.as_ref().expect("named fields have names"),
                    ty: &field.ty,
                    attrs,
                }),
                Err(e) => keep(e),
            }
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        Ok(Input {
            ident: &input.ident,
            vis: &input.vis,
            attrs,
            fields,
            generics: &input.generics,
        })
    }
}

/// Stores `value` in `slot`, or fails on the attribute's second appearance.
fn once<T>(slot: &mut Option<T>, value: T, path: &Path) -> Result<()> {
    if slot.is_some() {
        return Err(Error::new_spanned(
            path,
            format!("duplicate #[idict({})]", path_text(path)),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn path_text(path: &Path) -> String {
    path.get_ident()
        .map_or_else(|| "..".into(), Ident::to_string)
}

impl StructAttrs {
    fn from_syn(attrs: &[syn::Attribute]) -> Result<Self> {
        let mut out = StructAttrs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("idict")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("crate") {
                    let path: LitStr = meta.value()?.parse()?;
                    once(&mut out.krate, path.parse()?, &meta.path)
                } else if meta.path.is_ident("key") {
                    let name: LitStr = meta.value()?.parse()?;
                    once(&mut out.key, name.parse()?, &meta.path)
                } else if meta.path.is_ident("value") {
                    let name: LitStr = meta.value()?.parse()?;
                    once(&mut out.value, name.parse()?, &meta.path)
                } else if meta.path.is_ident("serde") {
                    once(&mut out.serde, meta.path.span(), &meta.path)
                } else if meta.path.is_ident("rename") || meta.path.is_ident("skip") {
                    Err(meta.error(format!(
                        "#[idict({})] goes on a field, not on the struct",
                        path_text(&meta.path)
                    )))
                } else {
                    Err(meta.error(format!(
                        "unknown attribute #[idict({})]; on a struct: crate = \"..\", key = \"..\", value = \"..\", serde",
                        path_text(&meta.path)
                    )))
                }
            })?;
        }
        Ok(out)
    }
}

impl FieldAttrs {
    fn from_syn(attrs: &[syn::Attribute]) -> Result<Self> {
        let mut out = FieldAttrs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("idict")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let name: LitStr = meta.value()?.parse()?;
                    once(&mut out.rename, name, &meta.path)
                } else if meta.path.is_ident("skip") {
                    once(&mut out.skip, meta.path.span(), &meta.path)
                } else {
                    Err(meta.error(format!(
                        "unknown attribute #[idict({})]; on a field: rename = \"..\", skip",
                        path_text(&meta.path)
                    )))
                }
            })?;
        }
        Ok(out)
    }
}
