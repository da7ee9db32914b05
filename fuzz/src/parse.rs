//! Everything the crate parses or validates, checked against what its documentation says:
//! `Config` (its getters, `max_pending_per_connection`, `validate`, and the builder's check
//! of it for several capacities and clocks), `ConnectionId` (`from_parts`, its parts, order,
//! `Display`), the keyed lookups and in-place copies of the provided `IDict` impls, key
//! names (the name rules against a reference written from the documentation, the streaming
//! check against `check_name`, each key type's names, names and parsing of maps and of a
//! derived struct), the errors' `Display` and the requests they hand back, and the `serde`
//! forms of snapshots, requests, ids, stats, config and a derived struct and its keys:
//! values round-trip through postcard and JSON, and raw bytes fed to the deserializers give
//! an error or a value that round-trips, never a panic.

use arbitrary::{Arbitrary, Unstructured};
use queueserver::idict::{
    check_name, write_checked, ByName, KeyError, KeyName, NameError, MAX_NAME_LEN,
};
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
    /// `Snapshot<Derived>`: a derived struct, an object by name.
    DerivedSnapshot,
    /// `DerivedKey`: a derived key, as its name.
    DerivedKey,
}

/// A derived IDict with a field of each kind that round-trips exactly (no floats: NaN is
/// not equal to itself).
#[derive(Arbitrary, Clone, Debug, Default, PartialEq, IDict)]
#[idict(serde)]
pub struct Derived {
    /// An integer beyond `f64`'s exact ones.
    pub count: u64,
    /// A signed one.
    pub offset: i8,
    /// A flag.
    pub on: bool,
    /// Text, with a name of two chunks.
    #[idict(rename = "mode/name")]
    #[arbitrary(with = short_string)]
    pub mode: heapless::String<8>,
    /// An optional value.
    pub fault: Option<u16>,
    /// An array.
    pub pair: [i16; 2],
    /// Not a key; left at its default so that it round-trips.
    #[idict(skip)]
    #[arbitrary(value = 0)]
    pub scratch: u8,
}

/// A `heapless::String<8>` from arbitrary text, cut to fit.
fn short_string(u: &mut Unstructured<'_>) -> arbitrary::Result<heapless::String<8>> {
    let text: &str = u.arbitrary()?;
    let mut out = heapless::String::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    Ok(out)
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
    /// Key names: `text` checked and parsed by every key type, a map and a derived struct;
    /// written in pieces cut at `cuts`; `keys` made a map whose names are checked.
    Names {
        /// A name, or not.
        text: String,
        /// Where the streaming check sees the text cut (byte offsets, rounded to chars).
        cuts: Vec<u8>,
        /// The keys of a map.
        keys: Vec<String>,
        /// A derived snapshot.
        derived: Derived,
    },
}

/// An input whose first byte is at least this feeds the rest, as it is, to a deserializer.
pub const RAW: u8 = 0xC0;

/// With [`RAW`], selects the second set of targets (the derived struct and its key) for
/// `b % 8` in 0 and 1.
pub const DERIVED: u8 = 0x10;

/// Checks one input; panics on any failure.
///
/// An input whose first byte `b` is at least [`RAW`] is raw bytes for a deserializer: JSON
/// if bit 3 of `b` is set, else postcard, of the type `Target` number `b % 8` (in the
/// order of its variants), or, with bit 4 ([`DERIVED`]) set and `b % 8` 0 or 1,
/// `DerivedSnapshot` or `DerivedKey`. Any other input is a [`Case`].
pub fn run(bytes: &[u8]) {
    match bytes.split_first() {
        Some((&first, rest)) if first >= RAW => {
            let target = match first % 8 {
                0 if first & DERIVED != 0 => Target::DerivedSnapshot,
                1 if first & DERIVED != 0 => Target::DerivedKey,
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
            Case::Names {
                text,
                cuts,
                keys,
                derived,
            } => check_names(&text, &cuts, &keys, &derived),
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
        Target::DerivedSnapshot => decode_as::<Snapshot<Derived>>(json, bytes),
        Target::DerivedKey => decode_as::<DerivedKey>(json, bytes),
    }
}

// ----- key names -----

/// The name rules as the documentation states them, written without `check_name`'s code.
fn reference_check(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.starts_with('@') {
        return Err(NameError::Reserved);
    }
    // The first problem in reading order: a forbidden character where it stands, a bad
    // chunk where it ends.
    let mut start = 0;
    for (i, c) in text.char_indices().chain([(text.len(), '/')]) {
        if c == '/' {
            let chunk = &text[start..i];
            if chunk.is_empty() {
                return Err(NameError::EmptyChunk);
            }
            if chunk == "." || chunk == ".." {
                return Err(NameError::DotChunk);
            }
            start = i + 1;
        } else if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(NameError::Char(c));
        }
    }
    if text.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// A key that writes its text in the pieces given.
struct Pieces<'a>(Vec<&'a str>);

impl KeyName for Pieces<'_> {
    fn write_name<W: std::fmt::Write + ?Sized>(&self, out: &mut W) -> std::fmt::Result {
        self.0.iter().try_for_each(|piece| out.write_str(piece))
    }

    fn from_name(_: &str) -> Result<Self, KeyError> {
        Err(KeyError::Unknown)
    }
}

/// `text` cut at `cuts` (byte offsets, moved back to char boundaries).
fn pieces<'a>(text: &'a str, cuts: &[u8]) -> Vec<&'a str> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut i = usize::from(c).min(text.len());
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        })
        .collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for i in at.into_iter().chain([text.len()]) {
        out.push(&text[start..i]);
        start = i;
    }
    out
}

/// `K`'s name for `text`: parsed, it writes back as `text`; integers agree with `str::parse`
/// on their one canonical form.
fn check_key_type<K>(text: &str, expected: Option<K>)
where
    K: KeyName + PartialEq + Debug,
{
    let parsed = K::from_name(text).ok();
    assert_eq!(
        parsed,
        expected,
        "{text:?} as {}",
        std::any::type_name::<K>()
    );
    if let Some(key) = parsed {
        let mut out = String::new();
        key.write_name(&mut out).expect("a key writes its name");
        assert_eq!(out, text);
    }
}

/// The canonical-integer reference: what `str::parse` accepts, written back identically.
fn canonical<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    text.parse::<T>().ok().filter(|v| v.to_string() == text)
}

fn name_of<D: IDict>(key: &D::Key) -> Result<String, KeyError> {
    let mut out = String::new();
    D::write_name(key, &mut out).map(|()| out)
}

fn check_names(text: &str, cuts: &[u8], keys: &[String], derived: &Derived) {
    // The rules: `check_name` is the documented reference, and the streaming check agrees
    // however the text is cut.
    let verdict = check_name(text);
    assert_eq!(verdict, reference_check(text), "{text:?}");
    if let Err(why) = verdict {
        assert!(!why.to_string().is_empty());
    }
    let mut written = String::new();
    let streamed = write_checked(&Pieces(pieces(text, cuts)), &mut written);
    assert_eq!(
        streamed,
        verdict.map_err(KeyError::Invalid),
        "{text:?} cut at {cuts:?}"
    );
    if streamed.is_ok() {
        assert_eq!(written, text);
    }

    // Key types.
    check_key_type::<u8>(text, canonical(text));
    check_key_type::<i16>(text, canonical(text));
    check_key_type::<u64>(text, canonical(text));
    check_key_type::<i128>(text, canonical(text));
    check_key_type::<bool>(text, text.parse().ok());
    let mut chars = text.chars();
    let one = chars.next().filter(|_| chars.next().is_none());
    check_key_type::<char>(text, one);
    check_key_type::<String>(text, Some(text.to_string()));
    check_key_type::<heapless::String<8>>(text, heapless::String::try_from(text).ok());

    // A map: every key named iff its text is a valid name, and parsed back; a name parsed
    // iff valid and present.
    let map: BTreeMap<String, i32> = keys.iter().cloned().zip(0..).collect();
    let mut all_named = true;
    map.visit(|key, value| {
        let named = name_of::<BTreeMap<String, i32>>(key);
        assert_eq!(
            named.clone().map(|_| ()),
            check_name(key).map_err(KeyError::Invalid)
        );
        match named {
            Ok(name) => {
                assert_eq!(&name, key);
                assert_eq!(map.parse_key(&name).as_ref(), Ok(key));
                assert_eq!(IDict::get(&map, key).as_ref(), Some(value));
            }
            Err(_) => all_named = false,
        }
    });
    let parsed = map.parse_key(text);
    match verdict {
        Err(why) => assert_eq!(parsed, Err(KeyError::Invalid(why))),
        Ok(()) if map.contains_key(text) => assert_eq!(parsed.as_deref(), Ok(text)),
        Ok(()) => assert_eq!(parsed, Err(KeyError::Unknown)),
    }
    let json = serde_json::to_value(ByName(&map));
    if all_named {
        let object = json.expect("a map of named keys serializes");
        let object = object.as_object().expect("an object");
        assert_eq!(object.len(), map.len());
        for (key, value) in &map {
            assert_eq!(object[key.as_str()], serde_json::json!(value));
        }
    } else {
        assert!(json.is_err());
    }

    // A derived struct: a name is a key iff it is one of the field names.
    let parsed = derived.parse_key(text);
    match DerivedKey::NAMES.iter().position(|name| *name == text) {
        Some(i) => assert_eq!(parsed, Ok(DerivedKey::ALL[i])),
        None => assert_eq!(
            parsed,
            Err(verdict.map_or_else(KeyError::Invalid, |()| KeyError::Unknown))
        ),
    }
    assert_eq!(text.parse::<DerivedKey>(), parsed);
    let mut seen = Vec::new();
    derived.visit(|key, value| {
        assert_eq!(derived.get(key).as_ref(), Some(value));
        assert_eq!(value.key(), *key);
        assert_eq!(name_of::<Derived>(key).as_deref(), Ok(key.name()));
        seen.push(*key);
    });
    assert_eq!(seen, DerivedKey::ALL);
    let mut copy = Derived::default();
    copy.copy_from(derived);
    assert_eq!(&copy, derived);
    round_trip(derived);
    let snapshot: Snapshot<Derived> =
        serde_json::from_value(serde_json::json!({"seq": 1, "data": ByName(derived)}))
            .expect("a derived snapshot from its object by name");
    assert_eq!(snapshot.data(), derived);
}
