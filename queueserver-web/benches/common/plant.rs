//! The demo's plant, as the web view's benchmark and latency example publish it.

use queueserver::IDict;

/// Six `f64`s by name, as the demo's `Plant`.
#[derive(Clone, Copy, Debug, Default, IDict)]
pub struct Plant {
    pub time: f64,
    pub position: f64,
    pub velocity: f64,
    pub force: f64,
    pub setpoint: f64,
    pub energy: f64,
}

impl Plant {
    /// The snapshot of step `step` (100 µs apart): every value moves.
    pub fn at(step: u64) -> Self {
        let t = step as f64 * 1e-4;
        Self {
            time: t,
            position: t.sin(),
            velocity: t.cos(),
            force: 3.0 * t.sin(),
            setpoint: 0.5,
            energy: 0.25,
        }
    }
}
