//! [`State`] as the crate's [`IDict`]: key 0 is the step, keys `1..=CHANNELS` the channels.

use crate::plant::State;
use queueserver::IDict;

impl IDict for State {
    type Key = u8;
    type Value = f32;

    fn get(&self, key: &u8) -> Option<f32> {
        match *key {
            // Exact below 2^24.
            0 => Some(self.step as f32),
            k => self.channels.get(usize::from(k) - 1).copied(),
        }
    }

    fn copy_from(&mut self, source: &Self) {
        *self = *source;
    }
}
