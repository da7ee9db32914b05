//! [`State`] as the crate's IDict, derived: `plant.rs` declares it through this macro, which
//! adds `#[derive(IDict)]` (the footprint baseline defines the macro without it).

use crate::plant::{State, StateKey, StateValue};

/// Declares `State` with `#[derive(IDict)]`: keys `step`, `ch1` … `ch15`, values the step as
/// a `u32` and each channel as an `f32`.
macro_rules! state_derives {
    ($state:item) => {
        #[derive(queueserver::IDict)]
        $state
    };
}

impl State {
    /// What a snapshot of period `step` holds under `key`, computed alone.
    pub fn value_of(step: u32, key: StateKey) -> StateValue {
        // The key enum's variants are in field order: `Step` is 0, `ChK` is K.
        let ch = || Self::channel(step, key as u8);
        match key {
            StateKey::Step => StateValue::Step(step),
            StateKey::Ch1 => StateValue::Ch1(ch()),
            StateKey::Ch2 => StateValue::Ch2(ch()),
            StateKey::Ch3 => StateValue::Ch3(ch()),
            StateKey::Ch4 => StateValue::Ch4(ch()),
            StateKey::Ch5 => StateValue::Ch5(ch()),
            StateKey::Ch6 => StateValue::Ch6(ch()),
            StateKey::Ch7 => StateValue::Ch7(ch()),
            StateKey::Ch8 => StateValue::Ch8(ch()),
            StateKey::Ch9 => StateValue::Ch9(ch()),
            StateKey::Ch10 => StateValue::Ch10(ch()),
            StateKey::Ch11 => StateValue::Ch11(ch()),
            StateKey::Ch12 => StateValue::Ch12(ch()),
            StateKey::Ch13 => StateValue::Ch13(ch()),
            StateKey::Ch14 => StateValue::Ch14(ch()),
            StateKey::Ch15 => StateValue::Ch15(ch()),
        }
    }
}
