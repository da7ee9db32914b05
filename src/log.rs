//! Logging through `log` and/or `defmt`, whichever features are on; nothing otherwise.
//!
//! Only the poller logs. Nothing on the computation's path (`put_update`, `wants_update`)
//! or the request path (`put_request`) ever calls these macros.

macro_rules! warning {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::warn!($fmt $(, $arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::warn!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        {
            $(let _ = &$arg;)*
        }
    }};
}

macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::debug!($fmt $(, $arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::debug!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        {
            $(let _ = &$arg;)*
        }
    }};
}

pub(crate) use {debug, warning};
