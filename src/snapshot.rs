//! [`Snapshot`]: one published copy of the IDict, numbered.
//!
//! Every publish gets the next sequence number (the initial IDict is number 0), so whoever
//! receives snapshots knows their order and how many it never saw.

/// A published copy of the computation's [`IDict`](crate::IDict) with its sequence number.
///
/// Dereferences to the IDict.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot<D> {
    seq: u64,
    data: D,
}

impl<D> Snapshot<D> {
    /// A snapshot of `data` numbered `seq`. A server numbers its own; this is for
    /// snapshots that come from elsewhere (a device's line, a replay) and are handed to a
    /// [relay](crate::runtime::relay) or a [`Store`](crate::Store) outside a server.
    pub const fn new(seq: u64, data: D) -> Self {
        Self { seq, data }
    }

    /// The sequence number: 0 for the initial IDict, then 1, 2, … for each publish.
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// The published IDict.
    pub const fn data(&self) -> &D {
        &self.data
    }

    /// Takes the IDict out of the snapshot.
    pub fn into_data(self) -> D {
        self.data
    }

    pub(crate) fn data_mut(&mut self) -> &mut D {
        &mut self.data
    }

    pub(crate) fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

impl<D> core::ops::Deref for Snapshot<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.data
    }
}
