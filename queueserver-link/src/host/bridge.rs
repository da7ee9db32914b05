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

/// The relay's feed, shared by the reading thread and the writer.
type SharedFeed = Arc<Mutex<Feed<DeviceValues>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the data whole between statements: a panic cannot break it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A get the relay has in flight.
struct Pending {
    /// The tag of the last GET frame written for it; `None` until it is written.
    tag: Option<u32>,
    /// When to write it (again).
    due: Instant,
}

/// The gets in flight, by query, and the live tag of each.
#[derive(Default)]
struct Table {
    pending: BTreeMap<Query<String>, Pending>,
    tags: HashMap<u32, Query<String>>,
    closed: bool,
}

impl Table {
    fn forget(&mut self, query: &Query<String>) -> bool {
        match self.pending.remove(query) {
            Some(pending) => {
                if let Some(tag) = pending.tag {
                    self.tags.remove(&tag);
                }
                true
            }
            None => false,
        }
    }
}

/// What the relay's upstream, the reading thread and the writer share.
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

    /// Notes a get of `query`, to be written at once; `false` once the bridge is closed.
    fn add(&self, query: Query<String>) -> bool {
        let mut table = self.table();
        if table.closed {
            return false;
        }
        let now = Instant::now();
        table
            .pending
            .entry(query)
            .and_modify(|pending| pending.due = now)
            .or_insert(Pending {
                tag: None,
                due: now,
            });
        drop(table);
        self.wake.notify_one();
        true
    }

    /// The get of `query` is answered or ended: forgets it.
    fn finish(&self, query: &Query<String>) {
        self.table().forget(query);
    }

    /// The get tagged `tag` was refused. A busy device is asked again after
    /// [`BUSY_RETRY`]; otherwise the get is forgotten and its query returned, for its
    /// askers to be told. `None` for a tag no get in flight has (one sent again since).
    fn refused(&self, tag: u32, code: ErrorCode) -> Option<Query<String>> {
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
        table.forget(&query);
        Some(query)
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

/// The relay's upstream: notes each request for the writer.
struct Requests(Arc<Gets>);

impl Upstream<String> for Requests {
    /// Never blocks: a short lock and a wake. Never refuses while the bridge is open,
    /// even while the line is down: the get then waits for the line (or its deadline).
    fn put(&self, query: Query<String>) -> Result<(), Refusal> {
        if self.0.add(query) {
            Ok(())
        } else {
            Err(Refusal::Detached)
        }
    }

    fn is_closed(&self) -> bool {
        self.0.table().closed
    }
}

/// The reading thread's side: snapshots into the store and the feed, answers and
/// refusals into the feed.
struct Feeder {
    feed: SharedFeed,
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
        let mut feed = lock(&self.feed);
        if feed.wants_updates() {
            // An error means the relay has ended: nobody takes updates any more.
            let _ = feed.update(&shared);
        }
    }

    fn event(&mut self, event: Event) {
        // The relay's own errors (it has ended, or is overloaded) are told to its askers
        // by the relay itself: nothing more to do here.
        match event {
            Event::Connected(_) => self.gets.resend_all(),
            Event::Answer(answer) => {
                // Forgotten first: a get of this key asked once the relay has handed this
                // answer out is a new request, which must be written.
                self.gets.finish(&Query::Key(answer.name.clone()));
                let key = &answer.name;
                let response = match &answer.value {
                    Some(value) => Response::Value {
                        key,
                        value,
                        seq: answer.seq,
                    },
                    None => Response::NotFound {
                        key,
                        seq: answer.seq,
                    },
                };
                let _ = lock(&self.feed).answer(response);
            }
            Event::SnapshotAnswer(snapshot) => {
                self.gets.finish(&Query::All);
                let snapshot = Snapshot::new(snapshot.seq, DeviceValues::new(snapshot));
                let _ = lock(&self.feed).answer(Response::Snapshot(&snapshot));
            }
            Event::Refused { tag, code } => {
                if let Some(query) = self.gets.refused(tag, code) {
                    end(&self.feed, &query, code, self.seq);
                }
            }
            Event::Abandoned(name) => {
                let query = name.map_or(Query::All, Query::Key);
                self.gets.finish(&query);
                let _ = lock(&self.feed).abandon(&query, Abandoned::Stopped);
            }
            Event::Disconnected(_) | Event::Status { .. } => {}
        }
    }
}

/// Ends the askers of a get refused for good: `NotFound` (in the snapshot numbered `seq`)
/// for a name the device does not know, else abandoned.
fn end(feed: &Mutex<Feed<DeviceValues>>, query: &Query<String>, code: ErrorCode, seq: u64) {
    let mut feed = lock(feed);
    let _ = match (query, code) {
        (Query::Key(key), ErrorCode::UnknownName) => feed.answer(Response::NotFound { key, seq }),
        _ => feed.abandon(query, Abandoned::Stopped),
    };
}

/// The writer thread: writes the GET frames that are due, and sleeps until the next one
/// is.
fn write(
    gets: &Gets,
    line: &Line,
    feed: &Mutex<Feed<DeviceValues>>,
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
                if gets.refused(tag, ErrorCode::UnknownName).is_some() {
                    end(feed, &query, ErrorCode::UnknownName, reader.load().seq());
                }
            }
        }
        table = gets.table();
    }
}

/// A [`Device`] behind a [relay](queueserver::runtime::relay): a sink (Zenoh, say)
/// spawned on [`relay`](Self::relay) publishes the firmware's snapshots and answers its
/// gets as it does a server's.
///
/// ```text
///  device's reading thread ── snapshot ──▶ Store (a Reader for the sinks' name lookups)
///   (decodes the line)                └──▶ Feed::update         ─┐
///                          ── answer, refusal, abandonment ──▶ Feed::answer / abandon
///                                                               ▼
///  askers (Zenoh gets, ...) ── Relay::ask ──▶ asks: one request per query in flight
///                                                │ Upstream::put (never blocks)
///                                                ▼
///                      the bridge's writer thread ── GET frames ──▶ the line
/// ```
///
/// - **Snapshots**: the reading thread stores each snapshot the device pushes in the
///   bridge's [`Store`] (its [`Reader`] is the relay's) and hands it to the relay's
///   [`Feed`] while the relay's sink wants updates. Nothing is copied: the relay shares
///   the `Arc` the store holds.
/// - **Gets**: the relay's asks put one request per query in flight (concurrent gets of a
///   key from many askers are one request); the bridge's writer thread turns each into a
///   GET frame (`@snapshot` for [`Query::All`]). The device's answer goes to the relay
///   (`Value`, or `NotFound` when the device found none), and so to every asker of that
///   key.
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
/// | the relay's [`Upstream`] (`put`) | whichever thread asks | never blocks: a short lock to note the get, and a wake of the writer |
/// | the feeding (snapshots, answers) | the device's reading thread | what a poller does for a relay: short locks, at most one wake per call, never a wait; an `Arc` per snapshot |
/// | the writer | the bridge's own thread, `queueserver-link-gets` | writes GET frames; the one part that waits for the line |
///
/// `A` is the sink's [`Asker`]. The relay's reader ([`reader`](Self::reader)) holds the
/// newest snapshot the device pushed ([`DeviceValues::empty`] until the first).
///
/// Closing or dropping the bridge stops its writer and the device's thread and closes
/// the line: the relay's worker then learns that nothing more will come (its askers are
/// told `Closed`), and the firmware goes on.
pub struct Bridge<A: Asker> {
    relay: Relay<DeviceValues, A>,
    reader: Reader<DeviceValues>,
    gets: Arc<Gets>,
    writer: Option<JoinHandle<()>>,
    device: Option<Device>,
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
        let (relay, feed) = Relay::fed(Requests(Arc::clone(&gets)), Some(reader.clone()), max_asks);
        let feed: SharedFeed = Arc::new(Mutex::new(feed));
        let feeder = Feeder {
            feed: Arc::clone(&feed),
            store,
            gets: Arc::clone(&gets),
            seq: 0,
        };
        let device = Device::open_tapped(address, options, Some(Box::new(feeder)))?;
        let writer = {
            let (gets, line, reader) = (Arc::clone(&gets), device.line(), reader.clone());
            std::thread::Builder::new()
                .name("queueserver-link-gets".into())
                .spawn(move || write(&gets, &line, &feed, &reader))
                .map_err(OpenError::Io)?
        };
        Ok(Self {
            relay,
            reader,
            gets,
            writer: Some(writer),
            device: Some(device),
        })
    }
}

impl<A: Asker> Bridge<A> {
    /// The relay the device feeds: spawn a sink on it.
    pub fn relay(&self) -> &Relay<DeviceValues, A> {
        &self.relay
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
