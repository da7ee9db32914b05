//! The firmware's connections: a console that writes over semihosting, and a probe.
//!
//! Both check everything they receive against [`State::at`]: a snapshot must be exactly the
//! state of the period its sequence number names, sequence numbers must grow, a value must
//! be the one the snapshot it was read from holds, and "not found" is always wrong (every
//! key of a derived IDict exists). A connection that receives something wrong counts it and returns an error, so the
//! server removes it and counts it failed: the firmware's checks then fail.

use crate::plant::State;
use core::fmt;
use cortex_m_semihosting::hprintln;
use queueserver::{Connection, ConnectionError, Response, Snapshot};

/// One connection of the firmware's server.
#[derive(Debug)]
pub struct Link {
    name: &'static str,
    subscribes: bool,
    echo: bool,
    /// Snapshots received with `on_update`.
    pub updates: u32,
    /// Sequence number of the newest snapshot received with `on_update`.
    pub last_update: u64,
    /// Values received.
    pub values: u32,
    /// "Not found" answers received.
    pub not_found: u32,
    /// Whole snapshots received as answers.
    pub snapshots: u32,
    /// Wrong things received (each also fails the connection).
    pub faults: u32,
}

impl Link {
    const fn new(name: &'static str, subscribes: bool, echo: bool) -> Self {
        Self {
            name,
            subscribes,
            echo,
            updates: 0,
            last_update: 0,
            values: 0,
            not_found: 0,
            snapshots: 0,
            faults: 0,
        }
    }

    /// Subscribes to updates and writes each one, and each whole snapshot it is answered,
    /// over semihosting.
    pub const fn console() -> Self {
        Self::new("console", true, true)
    }

    /// Does not subscribe; receives answers only, silently.
    pub const fn probe() -> Self {
        Self::new("probe", false, false)
    }

    /// Answers received, of every kind.
    pub fn answers(&self) -> u32 {
        self.values + self.not_found + self.snapshots
    }

    fn fault(&mut self, what: &'static str) -> Result<(), ConnectionError> {
        self.faults += 1;
        hprintln!("[{}] FAULT: {}", self.name, what);
        Err(ConnectionError::Failed(what))
    }

    fn echo(&self, what: &str, snapshot: &Snapshot<State>) {
        if self.echo {
            hprintln!(
                "[{}] {} #{}: step {}, ch1 {}, ch2 {}, ch15 {}",
                self.name,
                what,
                snapshot.seq(),
                snapshot.step,
                Halves(snapshot.ch1),
                Halves(snapshot.ch2),
                Halves(snapshot.ch15),
            );
        }
    }
}

impl Connection<State> for Link {
    fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
        if !snapshot.is_state_of(snapshot.seq()) {
            return self.fault("update is not the state of its sequence number");
        }
        if snapshot.seq() <= self.last_update {
            return self.fault("update older than the one before");
        }
        self.updates += 1;
        self.last_update = snapshot.seq();
        self.echo("update", snapshot);
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, State>) -> Result<(), ConnectionError> {
        match response {
            Response::Value { key, value, seq } => {
                let step = u32::try_from(seq).unwrap_or(u32::MAX);
                if State::value_of(step, *key) != *value {
                    return self.fault("value differs from the snapshot it was read from");
                }
                self.values += 1;
            }
            Response::NotFound { .. } => {
                self.not_found += 1;
                return self.fault("a key that exists was not found");
            }
            Response::Snapshot(snapshot) => {
                if !snapshot.is_state_of(snapshot.seq()) {
                    return self.fault("answered snapshot is not the state of its number");
                }
                self.snapshots += 1;
                self.echo("snapshot", snapshot);
            }
        }
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        self.subscribes
    }
}

/// Writes a non-negative multiple of ½ without float formatting (which would pull several
/// kilobytes of code into the firmware).
struct Halves(f32);

impl fmt::Display for Halves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let twice = (self.0 * 2.0) as u32;
        let half = if twice % 2 == 1 { ".5" } else { "" };
        write!(f, "{}{}", twice / 2, half)
    }
}
