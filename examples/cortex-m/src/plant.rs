//! The computation's state: the IDict that SysTick publishes every control period.
//!
//! A stand-in for a control loop's state: a step counter and [`CHANNELS`] `f32` channels,
//! each a sawtooth of the step. Every value is a function of the step alone and exact in
//! `f32`, so whoever receives a snapshot or a value can check it against the step it claims
//! to come from: a torn copy or a value read from the wrong snapshot shows.
//!
//! This module does not use the crate (the footprint baseline shares it); `IDict` is
//! implemented in `state_idict.rs`.

/// Channels besides the step counter.
pub const CHANNELS: usize = 15;

/// The last channel's key.
const CHANNELS_KEY: u8 = CHANNELS as u8;

/// The first key that names nothing: keys `0` (the step) to `CHANNELS` exist.
pub const UNKNOWN_KEY: u8 = CHANNELS as u8 + 1;

/// The published state: 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    /// The control period this state belongs to; equals the snapshot's sequence number when
    /// every period publishes.
    pub step: u32,
    /// The channels, keys `1..=CHANNELS`.
    pub channels: [f32; CHANNELS],
}

impl State {
    /// The state before the first period: every channel at 0.
    pub const INITIAL: State = State {
        step: 0,
        channels: [0.0; CHANNELS],
    };

    /// The state of control period `step`.
    pub fn at(step: u32) -> Self {
        let mut channels = [0.0; CHANNELS];
        for (k, channel) in (1..).zip(channels.iter_mut()) {
            *channel = Self::channel(step, k);
        }
        State { step, channels }
    }

    /// Channel `key` (in `1..=CHANNELS`) of period `step`: a multiple of ½ below 500, so
    /// exact in `f32`.
    pub fn channel(step: u32, key: u8) -> f32 {
        (step.wrapping_mul(7 * u32::from(key) - 6) % 1000) as f32 * 0.5
    }

    /// What a snapshot of period `step` holds under `key`, computed alone.
    pub fn value_of(step: u32, key: u8) -> Option<f32> {
        match key {
            0 => Some(step as f32),
            1..=CHANNELS_KEY => Some(Self::channel(step, key)),
            _ => None,
        }
    }

    /// Whether this is exactly the state of period `seq` (what a snapshot numbered `seq`
    /// must hold).
    pub fn is_state_of(&self, seq: u64) -> bool {
        u32::try_from(seq).is_ok_and(|step| *self == State::at(step))
    }
}
