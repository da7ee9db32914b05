//! Panics on the poller: how the server contains them.
//!
//! With `std`, the poller calls every [`Connection`](crate::Connection) method inside
//! `catch_unwind`: a panic there is a connection failure like an `Err`, with
//! [`ConnectionError::Panicked`](crate::ConnectionError::Panicked) and the panic's message.
//! Other code the poller runs (the [`IDict`](crate::IDict)'s `get`, `clone` and key
//! comparisons, the [`Clock`](crate::Clock)) may panic too, and that panic unwinds through
//! the poller call; so may a connection's panic without `std` where panics unwind.
//!
//! Either way the server stays consistent: it records what it is about to run before it
//! runs it, and keeps its counts and the batch of requests up to date one request at a
//! time. The next poller call finds the record of a call that never returned and
//! recovers: a connection whose call unwound is removed as failed (its message unknown),
//! requests whose read unwound are abandoned (each connection told through
//! [`Connection::on_abandoned`](crate::Connection::on_abandoned)), and the rest of the
//! batch is answered. A fan-out cut short goes on from the next connection, unless a newer
//! snapshot has come. No request is answered twice, and every accepted request is counted
//! in exactly one of [`Stats`](crate::Stats)' request outcomes.
//!
//! A [`Runner`](crate::Runner) does not run into the same panic again: after a panic that
//! unwinds through its poller it closes the request side, abandons what it had accepted and
//! stops (see [`StopCause`](crate::StopCause)). Whoever waits learns it as follows: a
//! [`Client`](crate::Client)'s callers get
//! [`AskError::Abandoned`](crate::AskError::Abandoned) at once (its connection is told its
//! requests were abandoned), and every later ask gets
//! [`AskError::Closed`](crate::AskError::Closed);
//! a [`Reader`](crate::Reader) waiting for a newer snapshot gets
//! [`WaitError::Closed`](crate::WaitError::Closed) at once (no poller serves the server any
//! more; another may after [`shutdown`](crate::Runner::shutdown), and readers then wait
//! again), and [`Runner::stopped`](crate::Runner::stopped) says why.
//! On the computation's side, a panic in
//! [`IDict::copy_from`](crate::IDict::copy_from) publishes nothing and uses up no sequence
//! number.
//!
//! Without `std` most embedded targets abort on a panic (`panic = "abort"`, or a panic
//! handler that halts), and none of this runs; where panics unwind, the same records keep
//! the counts exact.

use core::fmt;

/// The message of a panic, kept in a fixed buffer: the start of its text when the payload
/// was a string (cut at a character boundary, at most [`PanicMessage::CAPACITY`] bytes),
/// empty otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PanicMessage {
    text: [u8; PanicMessage::CAPACITY],
    len: u8,
    truncated: bool,
}

impl PanicMessage {
    /// How many bytes of the message are kept.
    pub const CAPACITY: usize = 96;

    /// A message with no text: the payload was not a string, or the panic unwound through
    /// a call the poller could not catch.
    pub const fn unknown() -> Self {
        Self {
            text: [0; Self::CAPACITY],
            len: 0,
            truncated: false,
        }
    }

    /// The start of `text`, cut at a character boundary to fit.
    pub fn new(text: &str) -> Self {
        let mut len = text.len().min(Self::CAPACITY);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut message = Self::unknown();
        message.text[..len].copy_from_slice(&text.as_bytes()[..len]);
        // `len` <= CAPACITY < 256.
        message.len = len as u8;
        message.truncated = len < text.len();
        message
    }

    /// The message of a caught panic's payload (std).
    #[cfg(feature = "std")]
    pub(crate) fn of(payload: &(dyn core::any::Any + Send)) -> Self {
        if let Some(text) = payload.downcast_ref::<&'static str>() {
            Self::new(text)
        } else if let Some(text) = payload.downcast_ref::<std::string::String>() {
            Self::new(text)
        } else {
            Self::unknown()
        }
    }

    /// The text kept: empty when the message is unknown.
    pub fn as_str(&self) -> &str {
        let bytes = &self.text[..usize::from(self.len)];
        // Always valid: `new` cuts at a character boundary.
        core::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Whether the message was longer than [`CAPACITY`](Self::CAPACITY) and was cut.
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Debug for PanicMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PanicMessage").field(&self.as_str()).finish()
    }
}

/// The text, with `…` when it was cut, or `(no message)`.
impl fmt::Display for PanicMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.as_str(), self.truncated) {
            ("", _) => f.write_str("(no message)"),
            (text, false) => f.write_str(text),
            (text, true) => write!(f, "{text}…"),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for PanicMessage {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str());
    }
}

/// Runs `f`, catching a panic with `std`; without `std` a panic unwinds (or aborts).
#[inline]
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, PanicMessage> {
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| PanicMessage::of(&*p))
    }
    #[cfg(not(feature = "std"))]
    {
        Ok(f())
    }
}

#[cfg(test)]
mod tests {
    use super::PanicMessage;

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let long = "é".repeat(60); // 120 bytes
        let message = PanicMessage::new(&long);
        assert!(message.is_truncated());
        assert_eq!(message.as_str(), "é".repeat(48));
        assert!(message.to_string().ends_with('…'));
        let short = PanicMessage::new("index out of bounds");
        assert_eq!(
            (short.as_str(), short.is_truncated()),
            ("index out of bounds", false)
        );
        assert_eq!(PanicMessage::unknown().to_string(), "(no message)");
    }
}
