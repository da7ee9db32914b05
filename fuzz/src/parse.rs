//! Everything the crate parses or validates, checked against what its documentation says:
//! `Config` (its getters, `max_pending_per_connection`, `validate`, and the builder's check
//! of it for several capacities and clocks), `ConnectionId` (`from_parts`, its parts, order,
//! `Display`), the keyed lookups and in-place copies of the provided `IDict` impls, the
//! errors' `Display` and the requests they hand back, and the `serde` forms of snapshots,
//! requests, ids, stats and config: values round-trip through postcard and JSON, and raw
//! bytes fed to the deserializers give an error or a value that round-trips, never a panic.

use arbitrary::{Arbitrary, Unstructured};
use queueserver::{
    Builder, Clock, Config, ConfigError, Connection, ConnectionError, ConnectionId,
    ConnectionsFull, IDict, ManualClock, NoClock, Query, Request, RequestError, Response, Snapshot,
    Stats,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// A duration from arbitrary parts (nanoseconds kept below a second).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct DurationPick(u64, u32);

impl DurationPick {
    fn duration(self) -> Duration {
        Duration::new(self.0, self.1 % 1_000_000_000)
    }
}

/// The settings of a `Config`.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct ConfigPick {
    update: Option<DurationPick>,
    request: Option<DurationPick>,
    share: Option<u32>,
}

impl ConfigPick {
    fn config(self) -> Config {
        let mut config = Config::new();
        if let Some(d) = self.update {
            config = config.with_min_update_interval(d.duration());
        }
        if let Some(d) = self.request {
            config = config.with_min_request_interval(d.duration());
        }
        if let Some(share) = self.share {
            config = config.with_max_pending_per_connection(share);
        }
        config
    }
}

/// A request with a string key, or for the whole snapshot.
#[derive(Arbitrary, Clone, Debug)]
pub struct RequestPick {
    key: Option<String>,
    id: IdParts,
}

/// The parts of a `ConnectionId`: server, slot, generation.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdParts(u32, u16, u32);

impl IdParts {
    fn id(self) -> ConnectionId {
        ConnectionId::from_parts(self.0, self.1, self.2)
    }
}

impl RequestPick {
    fn request(self) -> Request<String> {
        let from = self.id.id();
        match self.key {
            Some(key) => Request::key(from, key),
            None => Request::snapshot(from),
        }
    }
}

/// The wire form of a `Snapshot`, as its documentation describes it: a sequence number and
/// the data.
#[derive(Arbitrary, Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SnapshotParts<D> {
    /// The sequence number.
    pub seq: u64,
    /// The data.
    pub data: D,
}

/// A value to round-trip.
#[derive(Arbitrary, Clone, Debug)]
pub enum Wire {
    /// A snapshot of byte keys.
    Snapshot(SnapshotParts<BTreeMap<u8, i32>>),
    /// A snapshot of string keys.
    NamedSnapshot(SnapshotParts<BTreeMap<String, i64>>),
    /// A request.
    Request(RequestPick),
    /// An id.
    Id(IdParts),
    /// Stats, field by field.
    Stats([u64; 17]),
    /// A config.
    Config(ConfigPick),
}

/// Which type raw bytes are decoded as.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// `Snapshot<BTreeMap<u8, i32>>`.
    Snapshot,
    /// `Snapshot<BTreeMap<String, i64>>`.
    NamedSnapshot,
    /// `Request<String>`.
    Request,
    /// `Request<u8>`.
    ByteRequest,
    /// `Query<String>`.
    Query,
    /// `ConnectionId`.
    Id,
    /// `Stats`.
    Stats,
    /// `Config`.
    Config,
}

/// One test case.
#[derive(Arbitrary, Clone, Debug)]
pub enum Case {
    /// A config checked against capacities and clocks.
    Config {
        /// The settings.
        config: ConfigPick,
        /// A queue capacity.
        q: usize,
        /// A number of slots.
        maxc: usize,
        /// Whether the clock runs.
        running: bool,
    },
    /// An id and another to compare it with.
    Id(IdParts, IdParts),
    /// The provided IDict impls: filled from `entries`, probed with `probes`, then copied
    /// from a map filled from `other`.
    Maps {
        /// The first contents.
        entries: Vec<(u8, i32)>,
        /// The contents copied in.
        other: Vec<(u8, i32)>,
        /// Keys looked up.
        probes: Vec<u8>,
    },
    /// The errors' messages and the requests they hand back (with one of a few reasons
    /// for `ConnectionError::Failed`).
    Errors(RequestPick, u8),
    /// A value round-tripped through both formats.
    RoundTrip(Wire),
}

/// An input whose first byte is at least this feeds the rest, as it is, to a deserializer.
pub const RAW: u8 = 0xC0;

/// Checks one input; panics on any failure.
///
/// An input whose first byte `b` is at least [`RAW`] is raw bytes for a deserializer: JSON
/// if bit 3 of `b` is set, else postcard, of the type `Target` number `b % 8` (in the
/// order of its variants). Any other input is a [`Case`].
pub fn run(bytes: &[u8]) {
    match bytes.split_first() {
        Some((&first, rest)) if first >= RAW => {
            let target = match first % 8 {
                0 => Target::Snapshot,
                1 => Target::NamedSnapshot,
                2 => Target::Request,
                3 => Target::ByteRequest,
                4 => Target::Query,
                5 => Target::Id,
                6 => Target::Stats,
                _ => Target::Config,
            };
            decode(target, first & 0x08 != 0, rest);
        }
        _ => {
            if let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(bytes)) {
                case.check();
            }
        }
    }
}

impl Case {
    /// Checks the case; panics on any failure.
    pub fn check(self) {
        match self {
            Case::Config {
                config,
                q,
                maxc,
                running,
            } => check_config(config, q, maxc, running),
            Case::Id(id, other) => check_id(id, other),
            Case::Maps {
                entries,
                other,
                probes,
            } => check_maps(&entries, &other, &probes),
            Case::Errors(request, why) => {
                const WHY: [&str; 3] = ["", "socket", "a longer reason: with punctuation"];
                check_errors(request.request(), WHY[usize::from(why) % WHY.len()]);
            }
            Case::RoundTrip(wire) => round_trip_wire(wire),
        }
    }
}

// ----- config -----

/// The documented share: the one set, else `max(1, q / maxc)` (saturated to `u32`).
fn expected_share(set: Option<u32>, q: usize, maxc: usize) -> u32 {
    set.unwrap_or_else(|| {
        // A queue shared by no slot is not shared: the whole of it.
        let even = q / maxc.max(1);
        u32::try_from(even.max(1)).unwrap_or(u32::MAX)
    })
}

/// The documented check: a share in `1..=q`, and a running clock for any rate limit.
fn expected_validation(
    pick: ConfigPick,
    q: usize,
    maxc: usize,
    running: bool,
) -> Result<(), ConfigError> {
    let share = expected_share(pick.share, q, maxc);
    // The share is checked first (neither order is documented).
    if share == 0 || share as usize > q {
        return Err(ConfigError::Share { share, capacity: q });
    }
    if (pick.update.is_some() || pick.request.is_some()) && !running {
        return Err(ConfigError::RateLimitWithoutClock);
    }
    Ok(())
}

fn check_config(pick: ConfigPick, q: usize, maxc: usize, running: bool) {
    let config = pick.config();
    assert_eq!(
        config.min_update_interval(),
        pick.update.map(DurationPick::duration)
    );
    assert_eq!(
        config.min_request_interval(),
        pick.request.map(DurationPick::duration)
    );
    assert_eq!(
        config.max_pending_per_connection(q, maxc),
        expected_share(pick.share, q, maxc)
    );
    let validated = config.validate(q, maxc, running);
    assert_eq!(validated, expected_validation(pick, q, maxc, running));
    if let Err(error) = validated {
        let message = error.to_string();
        if let ConfigError::Share { share, capacity } = error {
            assert!(message.contains(&share.to_string()), "{message}");
            assert!(message.contains(&capacity.to_string()), "{message}");
        } else {
            assert!(message.contains("clock"), "{message}");
        }
    }
    round_trip(&config);

    if running {
        check_builder::<_, 8, 4>(pick, ManualClock::new());
        check_builder::<_, 2, 4>(pick, ManualClock::new());
        check_builder::<_, 4, 1>(pick, ManualClock::new());
        check_builder::<_, 128, 3>(pick, ManualClock::new());
    } else {
        check_builder::<_, 8, 4>(pick, NoClock);
        check_builder::<_, 2, 4>(pick, NoClock);
        check_builder::<_, 4, 1>(pick, NoClock);
        check_builder::<_, 128, 3>(pick, NoClock);
    }
}

/// A connection that ignores everything.
struct Nobody;

impl Connection<BTreeMap<u8, i32>> for Nobody {
    fn on_update(&mut self, _: &Snapshot<BTreeMap<u8, i32>>) -> Result<(), ConnectionError> {
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, BTreeMap<u8, i32>>) -> Result<(), ConnectionError> {
        Ok(())
    }
}

fn check_builder<T: Clock, const Q: usize, const MAXC: usize>(pick: ConfigPick, clock: T) {
    let running = clock.is_running();
    let config = pick.config();
    let built = Builder::new(BTreeMap::new())
        .clock(clock)
        .config(config)
        .capacity::<Q, MAXC>()
        .build::<Nobody>();
    match (built, expected_validation(pick, Q, MAXC, running)) {
        (Ok((_, server)), Ok(())) => {
            assert_eq!(server.share(), expected_share(pick.share, Q, MAXC));
            assert_eq!(server.config(), &config);
        }
        (Err(real), Err(expected)) => assert_eq!(real, expected),
        (real, expected) => panic!(
            "builder Q={Q} MAXC={MAXC}: {:?}, expected {expected:?}",
            real.map(|_| ())
        ),
    }
}

// ----- ids -----

fn check_id(parts: IdParts, other_parts: IdParts) {
    let IdParts(server, index, generation) = parts;
    let (id, other) = (parts.id(), other_parts.id());
    assert_eq!(
        (id.server(), id.index(), id.generation()),
        (server, index, generation)
    );
    assert_eq!(id.to_string(), format!("#{index}.{generation}@{server}"));
    // Ordered by server, then slot, then generation.
    assert_eq!(id.cmp(&other), parts.cmp(&other_parts));
    assert_eq!(id == other, parts == other_parts);
    if id == other {
        let hasher = RandomState::new();
        assert_eq!(hasher.hash_one(id), hasher.hash_one(other));
    }
    round_trip(&id);
}

// ----- IDict impls -----

/// Fills a map with `entries` through `insert`, which may refuse (a full `heapless` map);
/// returns the contents it should have.
fn fill<M>(
    map: &mut M,
    entries: &[(u8, i32)],
    insert: impl Fn(&mut M, u8, i32) -> bool,
) -> BTreeMap<u8, i32> {
    let mut model = BTreeMap::new();
    for &(k, v) in entries {
        if insert(map, k, v) {
            model.insert(k, v);
        }
    }
    model
}

fn check_idict<M: IDict<Key = u8, Value = i32> + Default>(
    entries: &[(u8, i32)],
    other: &[(u8, i32)],
    probes: &[u8],
    insert: impl Fn(&mut M, u8, i32) -> bool,
) {
    let mut map = M::default();
    let model = fill(&mut map, entries, &insert);
    for probe in probes {
        assert_eq!(IDict::get(&map, probe), model.get(probe).copied());
    }
    let mut source = M::default();
    let source_model = fill(&mut source, other, &insert);
    map.copy_from(&source);
    for key in 0..=u8::MAX {
        assert_eq!(
            IDict::get(&map, &key),
            source_model.get(&key).copied(),
            "after copy_from, key {key}"
        );
    }
}

fn check_maps(entries: &[(u8, i32)], other: &[(u8, i32)], probes: &[u8]) {
    check_idict::<BTreeMap<u8, i32>>(entries, other, probes, |m, k, v| {
        m.insert(k, v);
        true
    });
    check_idict::<HashMap<u8, i32>>(entries, other, probes, |m, k, v| {
        m.insert(k, v);
        true
    });
    check_idict::<heapless::LinearMap<u8, i32, 8>>(entries, other, probes, |m, k, v| {
        m.insert(k, v).is_ok()
    });
    check_idict::<heapless::index_map::FnvIndexMap<u8, i32, 8>>(
        entries,
        other,
        probes,
        |m, k, v| m.insert(k, v).is_ok(),
    );
}

// ----- errors -----

fn check_errors(request: Request<String>, why: &'static str) {
    let errors = [
        RequestError::Full(request.clone()),
        RequestError::OverQuota(request.clone()),
        RequestError::UnknownConnection(request.clone()),
        RequestError::Closed(request.clone()),
    ];
    for error in errors {
        assert!(!error.to_string().is_empty());
        assert_eq!(error.into_request(), request);
    }
    for error in [
        ConnectionError::Closed,
        ConnectionError::Overloaded,
        ConnectionError::Failed(why),
    ] {
        let message = error.to_string();
        assert!(message.contains(why) || !matches!(error, ConnectionError::Failed(_)));
        assert!(!message.is_empty());
    }
    let full = ConnectionsFull(request);
    assert_eq!(full.to_string(), "every connection slot is taken");
    assert_eq!(format!("{full:?}"), "ConnectionsFull(..)");
}

// ----- serde -----

/// Serializes `value` to postcard and JSON and back; both must give it back.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let bytes = postcard::to_allocvec(value).expect("postcard serializes");
    let back: T = postcard::from_bytes(&bytes).expect("postcard deserializes its own output");
    assert_eq!(&back, value, "postcard round trip");
    let text = serde_json::to_vec(value).expect("JSON serializes");
    let back: T = serde_json::from_slice(&text).expect("JSON deserializes its own output");
    assert_eq!(&back, value, "JSON round trip");
}

/// A snapshot built from its documented wire form must show those parts and serialize back
/// to the same form.
fn round_trip_snapshot<D>(parts: &SnapshotParts<D>)
where
    D: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = postcard::to_allocvec(parts).expect("postcard serializes");
    let snapshot: Snapshot<D> = postcard::from_bytes(&bytes).expect("a snapshot deserializes");
    assert_eq!(snapshot.seq(), parts.seq);
    assert_eq!(snapshot.data(), &parts.data);
    assert_eq!(postcard::to_allocvec(&snapshot).expect("serializes"), bytes);
    let text = serde_json::to_vec(parts).expect("JSON serializes");
    let snapshot: Snapshot<D> = serde_json::from_slice(&text).expect("a snapshot deserializes");
    assert_eq!(snapshot.seq(), parts.seq);
    assert_eq!(snapshot.data(), &parts.data);
    assert_eq!(serde_json::to_vec(&snapshot).expect("serializes"), text);
    round_trip(&snapshot);
}

fn stats_from(f: [u64; 17]) -> Stats {
    Stats {
        updates_published: f[0],
        updates_received: f[1],
        updates_overwritten: f[2],
        updates_delivered: f[3],
        updates_superseded: f[4],
        deliveries: f[5],
        requests_accepted: f[6],
        requests_rejected: f[7],
        requests_consolidated: f[8],
        requests_answered: f[9],
        requests_orphaned: f[10],
        requests_abandoned: f[11],
        reads: f[12],
        pending_high_water: f[13],
        connections_added: f[14],
        connections_removed: f[15],
        connections_failed: f[16],
    }
}

fn round_trip_wire(wire: Wire) {
    match wire {
        Wire::Snapshot(parts) => round_trip_snapshot(&parts),
        Wire::NamedSnapshot(parts) => round_trip_snapshot(&parts),
        Wire::Request(pick) => {
            let request = pick.request();
            round_trip(&request.query);
            round_trip(&request);
        }
        Wire::Id(parts) => round_trip(&parts.id()),
        Wire::Stats(fields) => round_trip(&stats_from(fields)),
        Wire::Config(pick) => round_trip(&pick.config()),
    }
}

/// Decodes `bytes` as a `T`: an error, or a value that round-trips.
fn decode_as<T: Serialize + DeserializeOwned + PartialEq + Debug>(json: bool, bytes: &[u8]) {
    let decoded = if json {
        serde_json::from_slice::<T>(bytes).ok()
    } else {
        postcard::from_bytes::<T>(bytes).ok()
    };
    if let Some(value) = decoded {
        round_trip(&value);
    }
}

fn decode(target: Target, json: bool, bytes: &[u8]) {
    match target {
        Target::Snapshot => decode_as::<Snapshot<BTreeMap<u8, i32>>>(json, bytes),
        Target::NamedSnapshot => decode_as::<Snapshot<BTreeMap<String, i64>>>(json, bytes),
        Target::Request => decode_as::<Request<String>>(json, bytes),
        Target::ByteRequest => decode_as::<Request<u8>>(json, bytes),
        Target::Query => decode_as::<Query<String>>(json, bytes),
        Target::Id => decode_as::<ConnectionId>(json, bytes),
        Target::Stats => decode_as::<Stats>(json, bytes),
        Target::Config => decode_as::<Config>(json, bytes),
    }
}
