//! Foxglove's protocol, `foxglove.websocket.v1`, on the view's listener: one more kind of
//! receiver of the view's relay, beside the pages.
//!
//! - **Channels** ([`Channels`]): one per value, its name as the topic, and one for the
//!   whole snapshot (`@snapshot`), each `json` with a JSON Schema of the JSON type its
//!   value had when the channel was first advertised. The table is shared by every client
//!   and follows the snapshot's names: a name that appears is advertised to every client,
//!   one that goes is unadvertised.
//! - **Fan-out** ([`Fanout`], on the relay's worker thread): for each snapshot the worker
//!   takes, the channels some client subscribes to, and only those, are encoded, each
//!   **once**, whatever the number of clients subscribed to it; each client's outbox is
//!   offered one update holding its frames (its subscription ids, the shared payloads).
//!   A client that reads too slowly loses its oldest update, counted and told to it with a
//!   `status`.
//! - **A client's messages** ([`Reader`], on the client's reader thread): `subscribe`
//!   (the newest value of each new subscription is sent at once, encoded there),
//!   `unsubscribe` (a frame of that subscription still queued is not sent),
//!   `getParameters` (through the relay's asks, as a page's ask), `setParameters`
//!   (refused), anything else (a `status` error).

mod parameters;
pub(crate) mod wire;

pub(crate) use self::parameters::ParameterAsker;
use self::parameters::{Gather, Outcome};
use self::wire::{Channel, Level, SNAPSHOT_CHANNEL, SNAPSHOT_TOPIC};
use crate::browser::{Browser, Frame, Handler, Out};
use crate::view::{lock, View, ViewAsker};
use queueserver::idict::{check_name, ByName, KeyError};
use queueserver::runtime::relay::Update;
use queueserver::{IDict, Query, Snapshot};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tungstenite::Bytes;

/// Whole nanoseconds of a time since the Unix epoch.
pub(crate) fn nanos(since_epoch: std::time::Duration) -> u64 {
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// One subscription of a client.
struct Sub {
    channel: u32,
    /// The snapshot last queued for it: a later snapshot only, so that its messages come
    /// in order.
    last_seq: Option<u64>,
    /// Cleared on unsubscribing.
    live: Arc<AtomicBool>,
}

/// A connected Foxglove client: its receiver (outbox, socket) and its subscriptions.
pub(crate) struct Client {
    pub(crate) browser: Arc<Browser>,
    subs: Mutex<BTreeMap<u32, Sub>>,
}

impl Client {
    pub(crate) fn new(browser: Arc<Browser>) -> Self {
        Self {
            browser,
            subs: Mutex::new(BTreeMap::new()),
        }
    }

    /// Queues a `status` message.
    fn status(&self, level: Level, message: &str) {
        self.browser
            .outbox
            .push(Out::text(wire::status(level, message)));
    }

    /// How many subscriptions it has.
    pub(crate) fn subscriptions(&self) -> usize {
        lock(&self.subs).len()
    }
}

/// The channels advertised to every client: see the [module docs](self).
#[derive(Default)]
pub(crate) struct Channels {
    snapshot: Option<Channel>,
    /// The values' channels, in the IDict's order.
    values: Vec<(String, Channel)>,
    next_id: u32,
    /// The snapshot the table was last brought up to.
    seq: Option<u64>,
}

/// What [`Channels::refresh`] changed.
#[derive(Default)]
struct Change {
    added: Vec<Channel>,
    removed: Vec<u32>,
}

impl Channels {
    /// Every channel, the snapshot's first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Channel> {
        self.snapshot
            .iter()
            .chain(self.values.iter().map(|(_, c)| c))
    }

    fn topic(&self, id: u32) -> Option<&str> {
        self.all().find(|c| c.id == id).map(|c| c.topic.as_str())
    }

    /// Brings the table up to `snapshot`'s names, unless it was brought up to a newer one;
    /// `name` is a buffer to write names into.
    fn refresh<D>(&mut self, snapshot: &Snapshot<D>, name: &mut String) -> Change
    where
        D: IDict,
        D::Value: Serialize,
    {
        if self.seq.is_some_and(|seq| seq > snapshot.seq()) {
            return Change::default();
        }
        self.seq = Some(snapshot.seq());
        let mut change = Change::default();
        if self.snapshot.is_none() {
            let sample = serde_json::to_value(ByName(snapshot.data())).unwrap_or(Value::Null);
            let channel = Channel::json(
                SNAPSHOT_CHANNEL,
                SNAPSHOT_TOPIC,
                &wire::snapshot_schema(&sample),
            );
            change.added.push(channel.clone());
            self.snapshot = Some(channel);
            self.next_id = SNAPSHOT_CHANNEL + 1;
        }
        // The usual case: the same names in the same order, checked without allocating.
        let mut at = 0;
        let mut same = true;
        snapshot.visit(|key, _| {
            name.clear();
            if same && D::write_name(key, name).is_ok() {
                same = self.values.get(at).is_some_and(|(known, _)| known == name);
                at += 1;
            }
        });
        if same && at == self.values.len() {
            return change;
        }
        let mut old: BTreeMap<String, Channel> = self.values.drain(..).collect();
        snapshot.visit(|key, value| {
            name.clear();
            if D::write_name(key, name).is_err() {
                return;
            }
            if self.values.iter().any(|(known, _)| known == name) {
                return;
            }
            let channel = old.remove(name.as_str()).unwrap_or_else(|| {
                let sample = serde_json::to_value(value).unwrap_or(Value::Null);
                let channel = Channel::json(self.next_id, name, &wire::value_schema(&sample));
                self.next_id += 1;
                change.added.push(channel.clone());
                channel
            });
            self.values.push((name.clone(), channel));
        });
        change.removed = old.into_values().map(|c| c.id).collect();
        change
    }
}

/// Registers `client` with the view: brings the channels up to the newest snapshot,
/// queues `serverInfo` and the advertisement of every channel, and adds the client to
/// those the worker serves, under the channels' lock, so that it misses no
/// advertisement.
pub(crate) fn register<D>(view: &View<D>, client: &Arc<Client>, name: &str, session: &str)
where
    D: IDict,
    D::Value: Serialize,
{
    let outbox = &client.browser.outbox;
    outbox.push(Out::text(wire::server_info(name, session)));
    let mut channels = lock(&view.channels);
    let mut buffer = String::new();
    if let Some(latest) = view.latest() {
        let change = channels.refresh(&latest, &mut buffer);
        tell_change(view, &change);
    }
    outbox.push(Out::text(wire::advertise(channels.all())));
    lock(&view.foxglove).push(Arc::clone(client));
}

/// Tells every client of channels added and removed, and ends the subscriptions to those
/// removed. Called with the channels' lock held.
fn tell_change<D: IDict>(view: &View<D>, change: &Change) {
    if change.added.is_empty() && change.removed.is_empty() {
        return;
    }
    let clients = lock(&view.foxglove).clone();
    for client in &clients {
        if !change.removed.is_empty() {
            lock(&client.subs).retain(|_, sub| {
                let keep = !change.removed.contains(&sub.channel);
                if !keep {
                    sub.live.store(false, Ordering::Release);
                }
                keep
            });
            client
                .browser
                .outbox
                .push(Out::text(wire::unadvertise(&change.removed)));
        }
        if !change.added.is_empty() {
            client
                .browser
                .outbox
                .push(Out::text(wire::advertise(&change.added)));
        }
    }
}

/// The payload of channel `channel` of `snapshot`, if it has one.
fn encode_one<D>(snapshot: &Snapshot<D>, channel: u32, topic: &str) -> Option<Vec<u8>>
where
    D: IDict,
    D::Value: Serialize,
{
    if channel == SNAPSHOT_CHANNEL {
        return wire::snapshot_payload(snapshot.seq(), &ByName(snapshot.data())).ok();
    }
    let key = snapshot.parse_key(topic).ok()?;
    let value = snapshot.get(&key)?;
    wire::value_payload(snapshot.seq(), &value).ok()
}

/// The Foxglove side of the view's sink, on the relay's worker thread: see the
/// [module docs](self).
#[derive(Default)]
pub(crate) struct Fanout {
    name: String,
    /// The last snapshot had a value without a JSON form: the clients were told once.
    failing: bool,
}

impl Fanout {
    /// Encodes the channels of `update` that some client subscribes to, once each, and
    /// offers each client its frames.
    pub(crate) fn update<D>(&mut self, view: &View<D>, update: &Update<D>, now: Instant)
    where
        D: IDict,
        D::Value: Serialize,
    {
        let mut channels = lock(&view.channels);
        let change = channels.refresh(update, &mut self.name);
        tell_change(view, &change);
        let clients = lock(&view.foxglove).clone();
        let wanted: BTreeSet<u32> = clients
            .iter()
            .flat_map(|c| {
                lock(&c.subs)
                    .values()
                    .map(|s| s.channel)
                    .collect::<Vec<_>>()
            })
            .collect();
        let seq = update.seq();
        let mut payloads: BTreeMap<u32, Bytes> = BTreeMap::new();
        let mut failed = None;
        if wanted.contains(&SNAPSHOT_CHANNEL) {
            match wire::snapshot_payload(seq, &ByName(update.data())) {
                Ok(payload) => {
                    payloads.insert(SNAPSHOT_CHANNEL, Bytes::from(payload));
                }
                Err(why) => failed = Some(format!("snapshot {seq} has no JSON form: {why}")),
            }
        }
        let mut at = 0;
        let name = &mut self.name;
        update.visit(|key, value| {
            name.clear();
            if D::write_name(key, name).is_err() {
                return;
            }
            // The table's order is this snapshot's, unless the table was brought up to a
            // newer snapshot with other names (a map's): then look the name up.
            let channel = match channels.values.get(at) {
                Some((known, channel)) if known == name.as_str() => Some(channel),
                _ => channels
                    .values
                    .iter()
                    .find(|(known, _)| known == name.as_str())
                    .map(|(_, channel)| channel),
            };
            at += 1;
            let Some(channel) = channel.filter(|c| wanted.contains(&c.id)) else {
                return;
            };
            match wire::value_payload(seq, value) {
                Ok(payload) => {
                    payloads.insert(channel.id, Bytes::from(payload));
                }
                Err(why) => {
                    failed = Some(format!("{name} of snapshot {seq} has no JSON form: {why}"));
                }
            }
        });
        drop(channels);
        let counters = &view.counters;
        counters.foxglove_updates.fetch_add(1, Ordering::Relaxed);
        counters
            .foxglove_payloads
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        match failed {
            Some(why) => {
                counters.serialize_errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    for client in &clients {
                        client.status(Level::Error, &why);
                    }
                }
            }
            None => self.failing = false,
        }
        let time = nanos(update.taken_since_epoch());
        for client in &clients {
            let mut subs = lock(&client.subs);
            let frames: Vec<Frame> = subs
                .iter_mut()
                .filter_map(|(&subscription, sub)| {
                    let payload = payloads.get(&sub.channel)?;
                    if sub.last_seq.is_some_and(|last| last >= seq) {
                        return None;
                    }
                    sub.last_seq = Some(seq);
                    Some(Frame {
                        subscription,
                        live: Arc::clone(&sub.live),
                        payload: payload.clone(),
                    })
                })
                .collect();
            if !frames.is_empty() {
                client.browser.outbox.offer(Out::Data { time, frames }, now);
            }
        }
    }

    /// Tells every client the computation's server stopped, after its last update.
    pub(crate) fn ended<D: IDict>(view: &View<D>) {
        let text = wire::status(
            Level::Warning,
            "the computation's server stopped: no more updates",
        );
        for client in lock(&view.foxglove).iter() {
            client.browser.outbox.push_last(Out::text(text.clone()));
        }
    }
}

/// A client's messages, read on its reader thread.
pub(crate) struct Reader<D: IDict> {
    pub(crate) view: Arc<View<D>>,
    pub(crate) client: Arc<Client>,
}

impl<D> Handler for Reader<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    fn text(&self, _: &Arc<Browser>, text: &str) {
        let counters = &self.view.counters;
        counters.messages.fetch_add(1, Ordering::Relaxed);
        match wire::parse(text) {
            Ok(wire::Incoming::Subscribe { subscriptions }) => self.subscribe(subscriptions),
            Ok(wire::Incoming::Unsubscribe { subscription_ids }) => {
                self.unsubscribe(&subscription_ids);
            }
            Ok(wire::Incoming::GetParameters {
                parameter_names,
                id,
            }) => self.get_parameters(parameter_names, id),
            Ok(wire::Incoming::SetParameters { id }) => {
                let id = id.map_or(String::new(), |id| format!(" (id {id:?})"));
                self.client.status(
                    Level::Error,
                    &format!(
                        "setParameters{id} refused: the computation's values are read-only \
                         from outside"
                    ),
                );
            }
            Err(why) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                self.client.status(Level::Error, &why);
            }
        }
    }
}

impl<D> Reader<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    /// Adds each valid subscription and sends its newest value at once; refuses the others
    /// with a `status` each.
    fn subscribe(&self, asked: Vec<wire::Subscription>) {
        let view = &self.view;
        let channels = lock(&view.channels);
        let mut subs = lock(&self.client.subs);
        // Read before the newest snapshot: no later snapshot's time is earlier.
        let time = nanos(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let latest = view.latest();
        let mut frames = Vec::new();
        let mut refused = Vec::new();
        for wire::Subscription { id, channel_id } in asked {
            let Some(topic) = channels.topic(channel_id) else {
                refused.push(format!(
                    "subscription {id}: no channel {channel_id} is advertised"
                ));
                continue;
            };
            if subs.contains_key(&id) {
                refused.push(format!("subscription {id}: the id is in use"));
                continue;
            }
            if let Some((other, _)) = subs.iter().find(|(_, s)| s.channel == channel_id) {
                refused.push(format!(
                    "subscription {id}: channel {channel_id} ({topic}) is subscribed already, \
                     as subscription {other}"
                ));
                continue;
            }
            let mut sub = Sub {
                channel: channel_id,
                last_seq: None,
                live: Arc::new(AtomicBool::new(true)),
            };
            if let Some(latest) = &latest {
                if let Some(payload) = encode_one(latest, channel_id, topic) {
                    sub.last_seq = Some(latest.seq());
                    frames.push(Frame {
                        subscription: id,
                        live: Arc::clone(&sub.live),
                        payload: Bytes::from(payload),
                    });
                }
            }
            subs.insert(id, sub);
        }
        drop(channels);
        if !frames.is_empty() {
            self.client.browser.outbox.push(Out::Data { time, frames });
        }
        drop(subs);
        for why in refused {
            self.client.status(Level::Error, &why);
        }
    }

    fn unsubscribe(&self, ids: &[u32]) {
        let mut subs = lock(&self.client.subs);
        let unknown: Vec<u32> = ids
            .iter()
            .filter(|id| match subs.remove(id) {
                Some(sub) => {
                    sub.live.store(false, Ordering::Release);
                    false
                }
                None => true,
            })
            .copied()
            .collect();
        drop(subs);
        if !unknown.is_empty() {
            self.client.status(
                Level::Error,
                &format!("unsubscribe: no subscription {unknown:?}"),
            );
        }
    }

    /// Asks for each named value through the relay, all in one go (one request per key in
    /// flight for every page and client together); an empty list asks for every value,
    /// one request for the whole snapshot. The reply comes once every name is answered.
    fn get_parameters(&self, names: Vec<String>, id: Option<String>) {
        let view = &self.view;
        let (Some(relay), Some(latest)) = (view.relay.get(), view.latest()) else {
            self.client.status(
                Level::Error,
                "getParameters: the view is not attached to a server",
            );
            return;
        };
        let all = names.is_empty();
        let gather = Gather::new(&self.client.browser, id, names.len().max(1));
        let mut asks = Vec::new();
        if all {
            asks.push((Query::All, 0));
        } else {
            for (at, name) in names.iter().enumerate() {
                let key = match check_name(name) {
                    Err(why) => Err(format!("{name:?} is no valid name: {why}")),
                    Ok(()) => latest.parse_key(name).map_err(|why| match why {
                        KeyError::Unknown => format!("{name:?}: no such value"),
                        why => format!("{name:?}: {why}"),
                    }),
                };
                match key {
                    Ok(key) => asks.push((Query::Key(key), at)),
                    Err(why) => gather.done(at, Outcome::Unknown(why)),
                }
            }
        }
        if asks.is_empty() {
            return;
        }
        let browser = &self.client.browser;
        let max = view.options.max_asks;
        let taken = browser.asks.fetch_add(asks.len(), Ordering::Relaxed);
        if taken + asks.len() > max {
            browser.asks.fetch_sub(asks.len(), Ordering::Relaxed);
            for (_, at) in asks {
                gather.done(
                    at,
                    Outcome::Failed(format!(
                        "too many reads outstanding (at most {max} per client)"
                    )),
                );
            }
            return;
        }
        // From here each asker owns one count just taken: its drop gives it back.
        let askers: Vec<_> = asks
            .into_iter()
            .map(|(query, at)| {
                let name = names.get(at).cloned().unwrap_or_default();
                let asker = ViewAsker::parameter(ParameterAsker::new(&gather, at, name, all));
                (query, asker)
            })
            .collect();
        view.counters
            .asks
            .fetch_add(askers.len() as u64, Ordering::Relaxed);
        let deadline = Instant::now() + view.options.ask_timeout;
        if let Err((error, refused)) = relay.ask_all(askers, deadline) {
            for (_, asker) in refused {
                queueserver::runtime::asks::Asker::fail(asker, error);
            }
        }
    }
}
