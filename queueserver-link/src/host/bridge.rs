//! [`Bridge`]: a [`Device`] behind a [relay](queueserver::runtime::relay), so that the
//! firmware is watched and asked with the same tools as a computation on the host.

use super::{Device, DeviceSnapshot, DeviceValues, Event, GetError, Line, OpenError, Options, Tap};
use crate::wire::{self, ErrorCode};
use queueserver::runtime::asks::{Asker, Refusal, Upstream};
use queueserver::runtime::relay::{Feed, Relay};
use queueserver::{Abandoned, Query, Reader, Response, Snapshot, Store};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long after a busy refusal a get is sent again.
const BUSY_RETRY: Duration = Duration::from_millis(10);

/// The feeds of the bridge's relays, by number: shared by the reading thread, the writer
/// and the bridge (which adds to them). Never shortened while the bridge is open: a
/// relay's number is its place.
type Feeds = Arc<Mutex<Vec<Feed<DeviceValues>>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the data whole between statements: a panic cannot break it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A get some relays have in flight.
struct Pending {
    /// The tag of the last GET frame written for it; `None` until it is written.
    tag: Option<u32>,
    /// When to write it (again).
    due: Instant,
    /// The relays that asked for it, by number: the ones its answer goes to.
    relays: Vec<usize>,
}

/// The gets in flight, by query, and the live tag of each.
#[derive(Default)]
struct Table {
    pending: BTreeMap<Query<String>, Pending>,
    tags: HashMap<u32, Query<String>>,
    closed: bool,
}

impl Table {
    /// Forgets the get of `query`: the relays that asked for it, none if no get of it was
    /// in flight.
    fn forget(&mut self, query: &Query<String>) -> Vec<usize> {
        match self.pending.remove(query) {
            Some(pending) => {
                if let Some(tag) = pending.tag {
                    self.tags.remove(&tag);
                }
                pending.relays
            }
            None => Vec::new(),
        }
    }
}

/// What the relays' upstreams, the reading thread and the writer share.
struct Gets {
    table: Mutex<Table>,
    /// Wakes the writer: a get to write, or the bridge closing.
    wake: Condvar,
    resend_after: Duration,
}

impl Gets {
    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// Notes relay `relay`'s get of `query`: written at once when no other relay has
    /// one in flight, or when this relay asks again (it lost hope in the first); joined
    /// to the one in flight otherwise. `false` once the bridge is closed.
    fn add(&self, query: Query<String>, relay: usize) -> bool {
        let mut table = self.table();
        if table.closed {
            return false;
        }
        let now = Instant::now();
        let mut write = true;
        table
            .pending
            .entry(query)
            .and_modify(|pending| {
                if pending.relays.contains(&relay) {
                    pending.due = now;
                } else {
                    // Another relay's get of the same query: one GET for both.
                    pending.relays.push(relay);
                    write = false;
                }
            })
            .or_insert_with(|| Pending {
                tag: None,
                due: now,
                relays: vec![relay],
            });
        drop(table);
        if write {
            self.wake.notify_one();
        }
        true
    }

    /// The get of `query` is answered or ended: forgets it, and returns the relays that
    /// asked for it.
    fn finish(&self, query: &Query<String>) -> Vec<usize> {
        self.table().forget(query)
    }

    /// The get tagged `tag` was refused. A busy device is asked again after
    /// [`BUSY_RETRY`]; otherwise the get is forgotten and its query returned with the
    /// relays that asked, for their askers to be told. `None` for a tag no get in flight
    /// has (one sent again since).
    fn refused(&self, tag: u32, code: ErrorCode) -> Option<(Query<String>, Vec<usize>)> {
        let mut table = self.table();
        let query = table.tags.remove(&tag)?;
        if code == ErrorCode::Busy {
            if let Some(pending) = table.pending.get_mut(&query) {
                pending.tag = None;
                pending.due = Instant::now() + BUSY_RETRY;
            }
            drop(table);
            self.wake.notify_one();
            return None;
        }
        let relays = table.forget(&query);
        Some((query, relays))
    }

    /// The line is up again: every get in flight is written again at once (its answer
    /// may have been lost with the line).
    fn resend_all(&self) {
        let mut table = self.table();
        let now = Instant::now();
        for pending in table.pending.values_mut() {
            pending.due = now;
        }
        drop(table);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.table().closed = true;
        self.wake.notify_all();
    }
}

/// A relay's upstream: notes each of its requests for the writer.
struct Requests {
    gets: Arc<Gets>,
    /// The relay's number: its feed's place.
    relay: usize,
}

impl Upstream<String> for Requests {
    /// Never blocks: a short lock and a wake. Never refuses while the bridge is open,
    /// even while the line is down: the get then waits for the line (or its deadline).
    fn put(&self, query: Query<String>) -> Result<(), Refusal> {
        if self.gets.add(query, self.relay) {
            Ok(())
        } else {
            Err(Refusal::Detached)
        }
    }

    fn is_closed(&self) -> bool {
        self.gets.table().closed
    }
}

/// Hands `what` to the feed of each relay of `relays` (the relays that asked).
fn each(
    feeds: &Mutex<Vec<Feed<DeviceValues>>>,
    relays: &[usize],
    mut what: impl FnMut(&mut Feed<DeviceValues>),
) {
    let mut feeds = lock(feeds);
    for &relay in relays {
        if let Some(feed) = feeds.get_mut(relay) {
            what(feed);
        }
    }
}

/// The reading thread's side: snapshots into the store and every feed, answers and
/// refusals into the feeds of the relays that asked.
struct Feeder {
    feeds: Feeds,
    store: Store<DeviceValues>,
    gets: Arc<Gets>,
    /// The newest sequence number stored.
    seq: u64,
}

impl Tap for Feeder {
    fn snapshot(&mut self, snapshot: &Arc<DeviceSnapshot>) {
        let shared = Arc::new(Snapshot::new(
            snapshot.seq,
            DeviceValues::new(Arc::clone(snapshot)),
        ));
        self.seq = snapshot.seq;
        // Stored first: the relay then shares the store's `Arc` instead of copying.
        self.store.store(Arc::clone(&shared));
        for feed in lock(&self.feeds).iter_mut() {
            if feed.wants_updates() {
                // An error means the relay has ended: nobody takes updates any more.
                let _ = feed.update(&shared);
            }
        }
    }

    fn event(&mut self, event: Event) {
        // The relay's own errors (it has ended, or is overloaded) are told to its askers
        // by the relay itself: nothing more to do here.
        match event {
            Event::Connected(_) => self.gets.resend_all(),
            Event::Answer(answer) => {
                // Forgotten first: a get of this key asked once a relay has handed this
                // answer out is a new request, which must be written. An answer no relay
                // waits for (a get sent twice, answered twice) goes to none.
                let relays = self.gets.finish(&Query::Key(answer.name.clone()));
                let (key, seq) = (&answer.name, answer.seq);
                each(&self.feeds, &relays, |feed| {
                    let response = match &answer.value {
                        Some(value) => Response::Value { key, value, seq },
                        None => Response::NotFound { key, seq },
                    };
                    let _ = feed.answer(response);
                });
            }
            Event::SnapshotAnswer(snapshot) => {
                let relays = self.gets.finish(&Query::All);
                let snapshot = Snapshot::new(snapshot.seq, DeviceValues::new(snapshot));
                each(&self.feeds, &relays, |feed| {
                    let _ = feed.answer(Response::Snapshot(&snapshot));
                });
            }
            Event::Refused { tag, code } => {
                if let Some((query, relays)) = self.gets.refused(tag, code) {
                    end(&self.feeds, &relays, &query, code, self.seq);
                }
            }
            Event::Abandoned(name) => {
                let query = name.map_or(Query::All, Query::Key);
                let relays = self.gets.finish(&query);
                each(&self.feeds, &relays, |feed| {
                    let _ = feed.abandon(&query, Abandoned::Stopped);
                });
            }
            Event::Disconnected(_) | Event::Status { .. } => {}
        }
    }
}

/// Ends the askers of a get refused for good, in each relay of `relays`: `NotFound` (in
/// the snapshot numbered `seq`) for a name the device does not know, else abandoned.
fn end(
    feeds: &Mutex<Vec<Feed<DeviceValues>>>,
    relays: &[usize],
    query: &Query<String>,
    code: ErrorCode,
    seq: u64,
) {
    each(feeds, relays, |feed| {
        let _ = match (query, code) {
            (Query::Key(key), ErrorCode::UnknownName) => {
                feed.answer(Response::NotFound { key, seq })
            }
            _ => feed.abandon(query, Abandoned::Stopped),
        };
    });
}

/// The writer thread: writes the GET frames that are due, and sleeps until the next one
/// is.
fn write(
    gets: &Gets,
    line: &Line,
    feeds: &Mutex<Vec<Feed<DeviceValues>>>,
    reader: &Reader<DeviceValues>,
) {
    let mut table = gets.table();
    loop {
        if table.closed {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<(u32, Query<String>)> = Vec::new();
        let mut next: Option<Instant> = None;
        let Table { pending, tags, .. } = &mut *table;
        for (query, get) in pending.iter_mut() {
            if get.due <= now {
                if let Some(old) = get.tag.take() {
                    tags.remove(&old);
                }
                let tag = line.next_tag();
                get.tag = Some(tag);
                get.due = now + gets.resend_after;
                tags.insert(tag, query.clone());
                due.push((tag, query.clone()));
            }
            next = Some(next.map_or(get.due, |at: Instant| at.min(get.due)));
        }
        if due.is_empty() {
            table = match next {
                Some(at) => {
                    gets.wake
                        .wait_timeout(table, at.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => gets.wake.wait(table).unwrap_or_else(|p| p.into_inner()),
            };
            continue;
        }
        drop(table);
        for (tag, query) in due {
            let name = match &query {
                Query::Key(name) => name.as_str(),
                Query::All => wire::SNAPSHOT_NAME,
            };
            // A line that is down takes nothing: the get is written again when it comes
            // back, or after `resend_after`.
            if let Err(GetError::UnknownName(_)) = line.send_get(tag, name) {
                // No such name can go on the wire (too long): the device has none.
                if let Some((query, relays)) = gets.refused(tag, ErrorCode::UnknownName) {
                    end(
                        feeds,
                        &relays,
                        &query,
                        ErrorCode::UnknownName,
                        reader.load().seq(),
                    );
                }
            }
        }
        table = gets.table();
    }
}

/// A [`Device`] behind [relays](queueserver::runtime::relay): a sink (Zenoh, say)
/// spawned on [`relay`](Self::relay) publishes the firmware's snapshots and answers its
/// gets as it does a server's; more watchers of other kinds (a web view, say) each get a
/// relay of their own from [`add_relay`](Self::add_relay), fed by the same line.
///
/// ```text
///  device's reading thread ── snapshot ──▶ Store (a Reader for the sinks' name lookups)
///   (decodes the line)                └──▶ Feed::update of every relay ─┐
///                          ── answer, refusal, abandonment ──▶ Feed::answer / abandon
///                                            of the relays that asked   ▼
///  askers (Zenoh gets, pages, ...) ── Relay::ask ──▶ each relay's asks: one request
///                                                 │  per query in flight
///                                                 │ Upstream::put (never blocks)
///                                                 ▼
///                   the gets table: one get per query, whatever the relays that ask
///                                                 ▼
///                      the bridge's writer thread ── GET frames ──▶ the line
/// ```
///
/// - **Snapshots**: the reading thread stores each snapshot the device pushes in the
///   bridge's [`Store`] (its [`Reader`] is every relay's) and hands it to the [`Feed`] of
///   each relay whose sink wants updates. Nothing is copied: each relay shares the `Arc`
///   the store holds, and keeps only the newest (latest wins; the snapshots it never took
///   are counted in its [`stats`](Relay::stats)). The device's line is never polled: it
///   pushes, the reading thread hands over.
/// - **Gets**: each relay's asks put one request per query in flight (concurrent gets of a
///   key from many askers are one request), and the bridge keeps one get per query
///   whatever the relays that ask (a Zenoh get and a page's ask of one key are one GET).
///   The bridge's writer thread turns each into a GET frame (`@snapshot` for
///   [`Query::All`]). The device's answer goes to each relay that asked (`Value`, or
///   `NotFound` when the device found none), and so to every asker of that key.
/// - **Refusals**: a get the device refuses as busy (no room for its answer) is sent again
///   10 ms later; one refused for an unknown name is answered `NotFound`; one refused
///   because the device's server closed, or that the device abandoned, ends its askers
///   with [`Abandoned::Stopped`].
/// - **A spoiled or dead line**: a get whose answer has not come within
///   [`Options::resend_after`] (a frame lost to garbage) is sent again, and when the line
///   comes back after failing or going silent, every get in flight is sent again at once.
///   Meanwhile gets wait, each until its asker's deadline. The device joins a get of a key
///   whose answer is due, so a get sent twice costs it one read.
///
/// | part | where it runs | guarantee |
/// |---|---|---|
/// | each relay's [`Upstream`] (`put`) | whichever thread asks | never blocks: a short lock to note the get, and a wake of the writer when it is new |
/// | the feeding (snapshots, answers) | the device's reading thread | what a poller does for a relay, for each relay: short locks, at most one wake per relay and call, never a wait; an `Arc` per snapshot, shared by every relay |
/// | the writer | the bridge's own thread, `queueserver-link-gets` | writes GET frames; the one part that waits for the line |
///
/// `A` is the first sink's [`Asker`]; [`add_relay`](Self::add_relay) makes relays of any
/// other. The relays' reader ([`reader`](Self::reader)) holds the newest snapshot the
/// device pushed ([`DeviceValues::empty`] until the first).
///
/// Closing or dropping the bridge stops its writer and the device's thread and closes
/// the line: each relay's worker then learns that nothing more will come (its askers are
/// told `Closed`, its sink [`End::Detached`](queueserver::runtime::relay::End::Detached)),
/// and the firmware goes on.
pub struct Bridge<A: Asker> {
    relay: Relay<DeviceValues, A>,
    reader: Reader<DeviceValues>,
    gets: Arc<Gets>,
    feeds: Feeds,
    writer: Option<JoinHandle<()>>,
    device: Option<Device>,
}

/// A relay fed by the bridge: its feed takes the next place in `feeds`.
fn fed<B>(
    gets: &Arc<Gets>,
    feeds: &Mutex<Vec<Feed<DeviceValues>>>,
    reader: &Reader<DeviceValues>,
    max_asks: usize,
) -> Relay<DeviceValues, B>
where
    B: Asker + Send + 'static,
{
    let mut feeds = lock(feeds);
    let upstream = Requests {
        gets: Arc::clone(gets),
        relay: feeds.len(),
    };
    let (relay, feed) = Relay::fed(upstream, Some(reader.clone()), max_asks);
    feeds.push(feed);
    relay
}

impl<A> Bridge<A>
where
    A: Asker + Send + 'static,
{
    /// Opens the device at `address` (as [`Device::open`]) and a relay fed by it: at most
    /// `max_asks` asks outstanding on the relay (see
    /// [`Asks`](queueserver::runtime::asks::Asks)). Starts the writer thread.
    ///
    /// **Any thread.** Blocks for the opening only; allocates.
    ///
    /// # Errors
    ///
    /// As [`Device::open`]; [`OpenError::Io`] when the writer thread cannot start.
    pub fn open(address: &str, options: Options, max_asks: usize) -> Result<Self, OpenError> {
        let store = Store::new(Snapshot::new(0, DeviceValues::empty()));
        let reader = store.reader();
        let gets = Arc::new(Gets {
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            resend_after: options.resend_after,
        });
        let feeds: Feeds = Arc::new(Mutex::new(Vec::new()));
        let relay = fed(&gets, &feeds, &reader, max_asks);
        let feeder = Feeder {
            feeds: Arc::clone(&feeds),
            store,
            gets: Arc::clone(&gets),
            seq: 0,
        };
        let device = Device::open_tapped(address, options, Some(Box::new(feeder)))?;
        let writer = {
            let (gets, line, reader) = (Arc::clone(&gets), device.line(), reader.clone());
            let feeds = Arc::clone(&feeds);
            std::thread::Builder::new()
                .name("queueserver-link-gets".into())
                .spawn(move || write(&gets, &line, &feeds, &reader))
                .map_err(OpenError::Io)?
        };
        Ok(Self {
            relay,
            reader,
            gets,
            feeds,
            writer: Some(writer),
            device: Some(device),
        })
    }
}

impl<A: Asker> Bridge<A> {
    /// The relay the device feeds, made by [`open`](Self::open): spawn a sink on it.
    pub fn relay(&self) -> &Relay<DeviceValues, A> {
        &self.relay
    }

    /// Another relay fed by the same line, for a watcher of another kind (`B`, its
    /// sink's asker): a web view beside Zenoh, say. At most `max_asks` asks outstanding
    /// on it. It is handed every snapshot the device pushes from now on while its sink
    /// wants updates (its reader, the bridge's, already holds the newest), and its gets
    /// join those of the other relays: a get of a key some relay already has in flight
    /// is no second GET on the line, and its answer goes to both.
    ///
    /// **Any thread.** A short lock; allocates the relay. A relay added to a closed
    /// bridge is never fed: its asks are refused
    /// ([`Refusal::Detached`](queueserver::runtime::asks::Refusal::Detached)).
    pub fn add_relay<B>(&self, max_asks: usize) -> Relay<DeviceValues, B>
    where
        B: Asker + Send + 'static,
    {
        fed(&self.gets, &self.feeds, &self.reader, max_asks)
    }

    /// The newest snapshot the device pushed, for any thread (the relay's reader).
    pub fn reader(&self) -> &Reader<DeviceValues> {
        &self.reader
    }

    /// The device: its schema, whether it is connected ([`Device::wait_connection`]), its
    /// counters and the device's own ([`Device::device_stats`]). Its event queue stays
    /// empty: the bridge takes the events.
    pub fn device(&self) -> &Device {
        self.device
            .as_ref()
            .expect("the device is only taken when the bridge is dropped")
    }

    /// Closes the bridge: see [`Bridge`].
    ///
    /// **Blocks** until the writer and the device's thread have stopped.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.gets.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(device) = self.device.take() {
            device.close();
        }
        // The bridge's own hold on the feeds: once they are dropped, every relay learns
        // that nothing more will come.
        lock(&self.feeds).clear();
    }
}

impl<A: Asker> Drop for Bridge<A> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<A: Asker> fmt::Debug for Bridge<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}
