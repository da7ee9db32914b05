//! Key names: the text form of an IDict's keys, and the rules that text follows.
//!
//! Whatever talks to the outside (a network transport, a web page, a command line) names
//! keys in text. The names an IDict writes go verbatim into Zenoh key expressions
//! (`P/<name>`) and URL paths, so the rules are those of both, made strict enough that a
//! name never needs escaping.
//!
//! # What a name may contain
//!
//! A name is 1 to [`MAX_NAME_LEN`] bytes of `/`-separated *chunks*:
//!
//! - a chunk is one or more of the ASCII letters, digits, `_`, `-` and `.`;
//! - a chunk is neither `.` nor `..` (a URL path would resolve them away);
//! - so no empty chunk, and no leading or trailing `/`;
//! - a leading `@` is reserved (`@snapshot` names the whole snapshot on the wire); `@`
//!   anywhere else, and every other character (`*`, `$`, `#`, `?`, `%`, spaces, non-ASCII,
//!   …), is refused too.
//!
//! Field names (`position`, `motor_current`), integers (`42`, `-7`) and paths of them
//! (`motor/speed`, `axis/2`) are names; `a*`, `x y`, `/x`, `x//y`, `@snapshot` and `` are
//! not. [`check_name`] applies the rules; it is a `const fn`, so names known at compile time
//! can be checked at compile time (`#[derive(IDict)]` does).
//!
//! # Keys and their names
//!
//! [`KeyName`] is the text form of a key type: how to write a key, and how to build one
//! from a name. The crate implements it for string keys (`&'static str`, `String`,
//! `heapless::String<N>`), integers, `char` and `bool`; any type with `Display` and `FromStr`
//! opts in through [`DisplayFromStr`]. `#[derive(IDict)]` implements it for the key enums
//! it generates. A key whose text breaks the rules (a map key `"a b"`) has no name:
//! [`IDict::write_name`](crate::IDict::write_name) says so with [`KeyError::Invalid`]
//! instead of writing it.

use core::fmt;
use core::str::FromStr;

/// The longest name, in bytes: a transport can hold any name in a
/// `heapless::String<MAX_NAME_LEN>` on the stack.
pub const MAX_NAME_LEN: usize = 64;

/// Why a text is not a valid key name (see the [module docs](self) for the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NameError {
    /// The text is empty.
    Empty,
    /// The text is longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
    /// A `/`-chunk is empty: a leading or trailing `/`, or `//`.
    EmptyChunk,
    /// A chunk is `.` or `..`.
    DotChunk,
    /// The text starts with `@`, which is reserved for names like `@snapshot`.
    Reserved,
    /// The text holds this character, which no name may hold.
    Char(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("a key name cannot be empty"),
            Self::TooLong => write!(f, "a key name is at most {MAX_NAME_LEN} bytes"),
            Self::EmptyChunk => f.write_str("a key name has no empty `/`-chunk, and no leading or trailing `/`"),
            Self::DotChunk => f.write_str("a `/`-chunk of a key name is neither `.` nor `..`"),
            Self::Reserved => f.write_str("a key name starting with `@` is reserved"),
            Self::Char(c) => write!(
                f,
                "{c:?} is not allowed in a key name (ASCII letters, digits, `_`, `-`, `.` and `/` are)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NameError {}

/// Whether `byte` may appear in a chunk of a name.
const fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

/// Checks `name` against the rules of the [module docs](self).
///
/// Runs anywhere, in time linear in the name's length; allocates nothing. A `const fn`:
///
/// ```
/// use queueserver::idict::{check_name, NameError};
///
/// const _: () = assert!(check_name("motor/speed").is_ok());
/// assert_eq!(check_name("motor/*"), Err(NameError::Char('*')));
/// assert_eq!(check_name("motor/"), Err(NameError::EmptyChunk));
/// assert_eq!(check_name("@snapshot"), Err(NameError::Reserved));
/// ```
pub const fn check_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes[0] == b'@' {
        return Err(NameError::Reserved);
    }
    let mut i = 0;
    let mut chunk_start = 0;
    while i <= bytes.len() {
        if i == bytes.len() || bytes[i] == b'/' {
            let len = i - chunk_start;
            if len == 0 {
                return Err(NameError::EmptyChunk);
            }
            if bytes[chunk_start] == b'.'
                && (len == 1 || (len == 2 && bytes[chunk_start + 1] == b'.'))
            {
                return Err(NameError::DotChunk);
            }
            chunk_start = i + 1;
        } else if !is_name_byte(bytes[i]) {
            return Err(NameError::Char(char_at(bytes, i)));
        }
        i += 1;
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// The character of the UTF-8 text `bytes` that starts at byte `i`.
const fn char_at(bytes: &[u8], i: usize) -> char {
    let b0 = bytes[i] as u32;
    let (len, mut code) = if b0 < 0x80 {
        (1, b0)
    } else if b0 >> 5 == 0b110 {
        (2, b0 & 0x1F)
    } else if b0 >> 4 == 0b1110 {
        (3, b0 & 0x0F)
    } else {
        (4, b0 & 0x07)
    };
    let mut k = 1;
    while k < len {
        code = (code << 6) | (bytes[i + k] as u32 & 0x3F);
        k += 1;
    }
    match char::from_u32(code) {
        Some(c) => c,
        None => char::REPLACEMENT_CHARACTER,
    }
}

/// Why a key could not be named, or a name could not be turned into a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyError {
    /// The text breaks the name rules: a name given to parse, or the text of a key (a map
    /// key `"a b"` has no name).
    Invalid(NameError),
    /// A valid name that the key type cannot hold: `x` or `300` for a `u8` key, a name
    /// longer than a `heapless::String<N>` key.
    Malformed,
    /// A valid name that names no key of this IDict.
    Unknown,
    /// The IDict does not name its keys: an impl that does not override
    /// [`IDict::write_name`](crate::IDict::write_name) and
    /// [`IDict::parse_key`](crate::IDict::parse_key).
    Unnamed,
    /// The writer the name went to refused it (a full buffer).
    Write,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => write!(f, "invalid key name: {why}"),
            Self::Malformed => f.write_str("the name does not fit the key type"),
            Self::Unknown => f.write_str("no key has this name"),
            Self::Unnamed => f.write_str("this IDict does not name its keys"),
            Self::Write => f.write_str("the key name could not be written"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Invalid(why) => Some(why),
            _ => None,
        }
    }
}

impl From<NameError> for KeyError {
    fn from(why: NameError) -> Self {
        Self::Invalid(why)
    }
}

/// The text form of a key type: writing a key, and building one from a name.
///
/// [`IDict::write_name`](crate::IDict::write_name) checks what `write_name` writes against
/// the name rules, and [`IDict::parse_key`](crate::IDict::parse_key) checks a name before
/// `from_name` sees it, so implementations need not repeat the rules. `write_name` and
/// `from_name` must agree: `from_name` of what `write_name` wrote gives an equal key.
///
/// For a type with `Display` and `FromStr`, wrap it in [`DisplayFromStr`] rather than
/// implementing this trait.
pub trait KeyName: Sized {
    /// Writes the key's text. Must not allocate.
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result;

    /// The key named `name`, a valid name. [`KeyError::Malformed`] when the type cannot hold
    /// it; [`KeyError::Unknown`] when the type cannot be built from text alone (a
    /// `&'static str`): the IDict then looks the name up among its own keys.
    fn from_name(name: &str) -> Result<Self, KeyError>;
}

/// For `&str` keys of any lifetime, not only `&'static str`: the compiler proves a future
/// `Send` with its lifetimes erased, so a task holding a client of a map with `&'static str`
/// keys needs this impl for every lifetime.
impl KeyName for &str {
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_str(self)
    }

    /// Always [`KeyError::Unknown`]: a name borrowed for the call cannot become a key that
    /// outlives it; the IDict finds the key among its own.
    fn from_name(_: &str) -> Result<Self, KeyError> {
        Err(KeyError::Unknown)
    }
}

impl KeyName for alloc::string::String {
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_str(self)
    }

    /// Allocates the string.
    fn from_name(name: &str) -> Result<Self, KeyError> {
        Ok(name.into())
    }
}

impl<const N: usize> KeyName for heapless::String<N> {
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_str(self)
    }

    fn from_name(name: &str) -> Result<Self, KeyError> {
        let mut key = heapless::String::new();
        key.push_str(name).map_err(|_| KeyError::Malformed)?;
        Ok(key)
    }
}

impl KeyName for char {
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_char(*self)
    }

    fn from_name(name: &str) -> Result<Self, KeyError> {
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(KeyError::Malformed),
        }
    }
}

impl KeyName for bool {
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        out.write_str(if *self { "true" } else { "false" })
    }

    fn from_name(name: &str) -> Result<Self, KeyError> {
        name.parse().map_err(|_| KeyError::Malformed)
    }
}

/// Whether `name` is an integer in its one canonical form: an optional `-` (never before
/// `0`), then digits without leading zeros.
fn is_canonical_integer(name: &str) -> bool {
    let digits = name.strip_prefix('-').unwrap_or(name);
    let bytes = digits.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || (bytes.len() == 1 && digits.len() == name.len()))
}

macro_rules! integer_key_names {
    ($($t:ty)*) => {$(
        /// Decimal, as `Display` writes it; parsing takes that form only (no `+`, no leading
        /// zeros, no `-0`), so each key has exactly one name.
        impl KeyName for $t {
            fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
                write!(out, "{self}")
            }

            fn from_name(name: &str) -> Result<Self, KeyError> {
                if !is_canonical_integer(name) {
                    return Err(KeyError::Malformed);
                }
                name.parse().map_err(|_| KeyError::Malformed)
            }
        }
    )*};
}

integer_key_names!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

/// A key type named by its `Display` and parsed by its `FromStr`, in the style of
/// `serde_with::DisplayFromStr`: use `DisplayFromStr<MyKey>` as the IDict's key to give
/// `MyKey` names without implementing [`KeyName`].
///
/// `Display` must not allocate for [`IDict::write_name`](crate::IDict::write_name) to stay
/// allocation-free, and `FromStr` must accept what `Display` writes.
///
/// ```
/// use queueserver::idict::{DisplayFromStr, KeyName};
/// use std::net::Ipv4Addr;
///
/// let key = DisplayFromStr(Ipv4Addr::new(10, 0, 0, 1));
/// let mut name = String::new();
/// key.write_name(&mut name).unwrap();
/// assert_eq!(name, "10.0.0.1");
/// assert_eq!(DisplayFromStr::<Ipv4Addr>::from_name("10.0.0.1"), Ok(key));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct DisplayFromStr<T>(pub T);

impl<T: fmt::Display + FromStr> KeyName for DisplayFromStr<T> {
    fn write_name<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        write!(out, "{}", self.0)
    }

    fn from_name(name: &str) -> Result<Self, KeyError> {
        name.parse().map(Self).map_err(|_| KeyError::Malformed)
    }
}

/// A `fmt::Write` that passes text on and checks, as it goes, that it is a valid name.
///
/// [`finish`](Self::finish) gives the verdict on the whole text. Holds no buffer: the rules
/// need only the previous byte, the current chunk's length and the total length.
pub(crate) struct Checked<'a, W: fmt::Write + ?Sized> {
    out: &'a mut W,
    len: usize,
    chunk: usize,
    /// The current chunk so far is `.` (1) or `..` (2); 0 otherwise.
    dots: u8,
    error: Option<NameError>,
}

impl<'a, W: fmt::Write + ?Sized> Checked<'a, W> {
    pub(crate) fn new(out: &'a mut W) -> Self {
        Self {
            out,
            len: 0,
            chunk: 0,
            dots: 0,
            error: None,
        }
    }

    fn end_chunk(&mut self) -> Result<(), NameError> {
        if self.chunk == 0 {
            return Err(NameError::EmptyChunk);
        }
        if self.dots > 0 && usize::from(self.dots) == self.chunk {
            return Err(NameError::DotChunk);
        }
        self.chunk = 0;
        self.dots = 0;
        Ok(())
    }

    fn byte(&mut self, byte: u8, s: &str, i: usize) -> Result<(), NameError> {
        if self.len == 0 && byte == b'@' {
            return Err(NameError::Reserved);
        }
        self.len += 1;
        if byte == b'/' {
            return self.end_chunk();
        }
        if !is_name_byte(byte) {
            return Err(NameError::Char(char_at(s.as_bytes(), i)));
        }
        if byte == b'.' && self.dots as usize == self.chunk && self.dots < 2 {
            self.dots += 1;
        }
        self.chunk += 1;
        Ok(())
    }

    /// The verdict on everything written: `Ok` when it was a valid name and the writer took
    /// it all.
    pub(crate) fn finish(mut self) -> Result<(), KeyError> {
        if let Some(why) = self.error {
            return Err(KeyError::Invalid(why));
        }
        if self.len == 0 {
            return Err(KeyError::Invalid(NameError::Empty));
        }
        self.end_chunk()?;
        if self.len > MAX_NAME_LEN {
            return Err(KeyError::Invalid(NameError::TooLong));
        }
        Ok(())
    }

    /// Maps the result of writing through this checker to the error that explains it.
    pub(crate) fn result(self, written: fmt::Result) -> Result<(), KeyError> {
        match (written, self.error) {
            (_, Some(why)) => Err(KeyError::Invalid(why)),
            (Err(fmt::Error), None) => Err(KeyError::Write),
            (Ok(()), None) => self.finish(),
        }
    }
}

impl<W: fmt::Write + ?Sized> fmt::Write for Checked<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, byte) in s.bytes().enumerate() {
            if let Err(why) = self.byte(byte, s, i) {
                self.error = Some(why);
                return Err(fmt::Error);
            }
        }
        self.out.write_str(s)
    }
}

/// A `fmt::Write` that compares what is written with `expected`, without storing it.
pub(crate) struct Matches<'a> {
    rest: &'a str,
    equal: bool,
}

impl<'a> Matches<'a> {
    pub(crate) fn new(expected: &'a str) -> Self {
        Self {
            rest: expected,
            equal: true,
        }
    }

    /// Whether everything written equals `expected`, all of it.
    pub(crate) fn is_match(&self) -> bool {
        self.equal && self.rest.is_empty()
    }
}

impl fmt::Write for Matches<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.rest.strip_prefix(s) {
            Some(rest) if self.equal => {
                self.rest = rest;
                Ok(())
            }
            _ => {
                self.equal = false;
                Err(fmt::Error)
            }
        }
    }
}
