//! The computation's state: the IDict that SysTick publishes every control period.
//!
//! A stand-in for a control loop's state: a step counter and [`CHANNELS`] `f32` channels,
//! each a sawtooth of the step. Every value is a function of the step alone and exact in
//! `f32`, so whoever receives a snapshot or a value can check it against the step it claims
//! to come from: a torn copy or a value read from the wrong snapshot shows.
//!
//! The struct is declared through `state_derives!`, which the program that includes this
//! module defines first: the firmware and `footprint-server` add `#[derive(IDict)]` (keys
//! `StateKey`: `step`, `ch1` … `ch15`; values `StateValue`: the step as a `u32`, each
//! channel as an `f32`), `footprint-baseline` adds nothing, so that it links none of the
//! crate.

/// Channels besides the step counter.
pub const CHANNELS: usize = 15;

state_derives! {
/// The published state: 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    /// The control period this state belongs to; equals the snapshot's sequence number when
    /// every period publishes.
    pub step: u32,
    /// Channel 1.
    pub ch1: f32,
    /// Channel 2.
    pub ch2: f32,
    /// Channel 3.
    pub ch3: f32,
    /// Channel 4.
    pub ch4: f32,
    /// Channel 5.
    pub ch5: f32,
    /// Channel 6.
    pub ch6: f32,
    /// Channel 7.
    pub ch7: f32,
    /// Channel 8.
    pub ch8: f32,
    /// Channel 9.
    pub ch9: f32,
    /// Channel 10.
    pub ch10: f32,
    /// Channel 11.
    pub ch11: f32,
    /// Channel 12.
    pub ch12: f32,
    /// Channel 13.
    pub ch13: f32,
    /// Channel 14.
    pub ch14: f32,
    /// Channel 15.
    pub ch15: f32,
}
}

impl State {
    /// The state before the first period: every channel at 0.
    pub const INITIAL: State = State::from_channels(0, [0.0; CHANNELS]);

    const fn from_channels(step: u32, ch: [f32; CHANNELS]) -> Self {
        let [ch1, ch2, ch3, ch4, ch5, ch6, ch7, ch8, ch9, ch10, ch11, ch12, ch13, ch14, ch15] = ch;
        State {
            step,
            ch1,
            ch2,
            ch3,
            ch4,
            ch5,
            ch6,
            ch7,
            ch8,
            ch9,
            ch10,
            ch11,
            ch12,
            ch13,
            ch14,
            ch15,
        }
    }

    /// The state of control period `step`.
    pub fn at(step: u32) -> Self {
        let mut channels = [0.0; CHANNELS];
        for (k, channel) in (1..).zip(channels.iter_mut()) {
            *channel = Self::channel(step, k);
        }
        Self::from_channels(step, channels)
    }

    /// Channel `key` (in `1..=CHANNELS`) of period `step`: a multiple of ½ below 500, so
    /// exact in `f32`.
    pub fn channel(step: u32, key: u8) -> f32 {
        (step.wrapping_mul(7 * u32::from(key) - 6) % 1000) as f32 * 0.5
    }

    /// Whether this is exactly the state of period `seq` (what a snapshot numbered `seq`
    /// must hold).
    pub fn is_state_of(&self, seq: u64) -> bool {
        u32::try_from(seq).is_ok_and(|step| *self == State::at(step))
    }
}
