//! The computation's path never allocates: a counting global allocator watches
//! `put_update` and `wants_update` (and `put_request`, which connections and interrupts
//! call) for every provided IDict kind and with `ThreadNotify`, the hook that used to
//! allocate the first time it ran on a thread; and a map built with other keys than those
//! published allocates exactly where `idict.rs` says. A `Reader`'s load, off the
//! computation's path, allocates exactly where its docs say: once per thread, at most. Counts are per thread, so other tests
//! running in parallel cannot disturb them.

use queueserver::{Builder, Connection, ConnectionError, FlagNotify, IDict, QueueServer, Request};
use queueserver::{Response, Snapshot};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and frees made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

struct Sink;

impl<D: IDict> Connection<D> for Sink {
    fn on_update(&mut self, _: &Snapshot<D>) -> Result<(), ConnectionError> {
        Ok(())
    }
    fn on_response(&mut self, _: Response<'_, D>) -> Result<(), ConnectionError> {
        Ok(())
    }
}

/// Publishes `states` round after round, with polls in between, and returns the
/// allocations made by `put_update` and `wants_update` alone.
fn publish_allocations<D: IDict>(states: &[D]) -> u64 {
    let (mut publisher, mut server) = Builder::new(states[0].clone())
        .notify(FlagNotify::new())
        .build_with([Sink])
        .unwrap();
    let mut total = 0;
    for round in 0..100 {
        for state in states {
            total += allocations_in(|| {
                if publisher.wants_update() {
                    publisher.put_update(state);
                }
            });
        }
        if round % 3 == 0 {
            let _ = server.poll();
        }
    }
    assert_eq!(publisher.published(), 100 * states.len() as u64);
    total
}

#[derive(Clone, Default)]
struct Plant {
    position: f64,
    velocity: f64,
    mode: u8,
}

impl IDict for Plant {
    type Key = u8;
    type Value = f64;
    fn get(&self, key: &u8) -> Option<f64> {
        match key {
            0 => Some(self.position),
            1 => Some(self.velocity),
            2 => Some(f64::from(self.mode)),
            _ => None,
        }
    }
}

#[test]
fn put_update_on_a_plain_struct_never_allocates() {
    let states: Vec<Plant> = (0..4)
        .map(|i| Plant {
            position: f64::from(i),
            velocity: -f64::from(i),
            mode: i as u8,
        })
        .collect();
    assert_eq!(publish_allocations(&states), 0);
}

/// A derived IDict of every kind of field: its generated `copy_from` copies field by field.
#[derive(Clone, Default, IDict)]
struct Derived {
    position: f64,
    steps: u64,
    running: bool,
    #[idict(rename = "mode/name")]
    mode: heapless::String<24>,
    history: [f32; 8],
    fault: Option<i32>,
    #[idict(skip)]
    scratch: [u8; 16],
}

#[test]
fn put_update_on_a_derived_struct_never_allocates() {
    let states: Vec<Derived> = (0..4u8)
        .map(|i| Derived {
            position: f64::from(i),
            steps: u64::from(i) << 60,
            running: i % 2 == 0,
            // Strings of different lengths: a `String` would reallocate here.
            mode: heapless::String::try_from("x".repeat(usize::from(i) * 6).as_str()).unwrap(),
            history: [f32::from(i); 8],
            fault: (i == 3).then_some(-1),
            scratch: [i; 16],
        })
        .collect();
    assert_eq!(publish_allocations(&states), 0);
}

/// Not `Copy`: the derived `copy_from` goes field by field with `clone_from`, which lets a
/// skipped buffer reuse its memory.
#[derive(Clone, IDict)]
struct WithBuffer {
    level: f64,
    #[idict(skip)]
    samples: Vec<u8>,
}

#[test]
fn a_derived_copy_from_reuses_what_a_field_owns() {
    let states: Vec<WithBuffer> = (0..4u8)
        .map(|i| WithBuffer {
            level: f64::from(i),
            samples: vec![i; 32],
        })
        .collect();
    assert_eq!(publish_allocations(&states), 0);
    // The same with `*self = source.clone()` would allocate and free on every copy.
    let mut copy = states[0].clone();
    assert_eq!(allocations_in(|| copy.copy_from(&states[3])), 0);
    assert_eq!(copy.samples, [3; 32]);
    assert!(allocations_in(|| copy = states[2].clone()) > 0);
}

#[test]
fn naming_visiting_and_parsing_a_derived_struct_never_allocate() {
    let state = Derived::default();
    let mut name = heapless::String::<{ queueserver::idict::MAX_NAME_LEN }>::new();
    let n = allocations_in(|| {
        let mut visited = 0;
        state.visit(|key, value| {
            name.clear();
            Derived::write_name(key, &mut name).unwrap();
            assert_eq!(state.parse_key(&name), Ok(*key));
            assert_eq!(value.key(), *key);
            visited += 1;
        });
        assert_eq!(visited, 6);
    });
    assert_eq!(n, 0);
}

#[test]
fn put_update_on_heapless_maps_never_allocates() {
    let mut map = heapless::index_map::FnvIndexMap::<&str, f64, 8>::new();
    let mut states = Vec::new();
    for i in 0..4 {
        map.insert("x", f64::from(i)).unwrap();
        if i == 2 {
            map.insert("extra", 1.0).unwrap(); // key sets may differ
        }
        states.push(map.clone());
    }
    assert_eq!(publish_allocations(&states), 0);

    let mut linear = heapless::LinearMap::<u8, i64, 4>::new();
    let mut states = Vec::new();
    for i in 0..4 {
        linear.insert(i, i64::from(i)).unwrap();
        states.push(linear.clone());
    }
    assert_eq!(publish_allocations(&states), 0);
}

#[test]
fn put_update_on_std_maps_with_stable_keys_never_allocates() {
    let btree: Vec<BTreeMap<&str, f64>> = (0..4)
        .map(|i| BTreeMap::from([("a", f64::from(i)), ("b", 2.0), ("c", 3.0)]))
        .collect();
    assert_eq!(publish_allocations(&btree), 0);

    let hash: Vec<HashMap<&str, f64>> = (0..4)
        .map(|i| HashMap::from([("a", f64::from(i)), ("b", 2.0), ("c", 3.0)]))
        .collect();
    assert_eq!(publish_allocations(&hash), 0);
}

#[test]
fn the_counter_sees_allocations_when_there_are_some() {
    // A map whose key set changes must be rebuilt: the counter has to notice, or the
    // zero counts above would prove nothing.
    let changing: Vec<BTreeMap<u32, f64>> = (0..4)
        .map(|i| BTreeMap::from([(i, 1.0), (i + 10, 2.0)]))
        .collect();
    assert!(publish_allocations(&changing) > 0);
}

#[test]
fn put_request_and_wants_update_never_allocate() {
    let (publisher, mut server) =
        QueueServer::<BTreeMap<&str, f64>, Sink>::new(BTreeMap::from([("x", 1.0)]));
    let id = server.add_connection(Sink).unwrap();
    let requester = server.requester();
    for _ in 0..50 {
        let n = allocations_in(|| {
            for _ in 0..8 {
                let _ = requester.put_request(Request::key(id, "x"));
            }
            let refused = requester.put_request(Request::key(id, "x")).unwrap_err();
            assert_eq!(refused.into_request(), Request::key(id, "x"));
            assert!(publisher.wants_update());
        });
        assert_eq!(n, 0);
        let _ = server.process_requests();
    }
    assert_eq!(server.stats().requests_accepted, 400);
    assert_eq!(server.stats().requests_rejected, 50);
}

#[test]
fn a_reader_allocates_once_per_thread_at_its_first_load_and_never_after() {
    use std::sync::{Arc, Barrier};
    // Threads alive at once, each holding its arc-swap node: more than the nodes that
    // threads gone before may have left free, so some first loads must allocate.
    const THREADS: usize = 32;
    let (mut publisher, mut server) = Builder::new(BTreeMap::from([("x", 1.0)]))
        .notify(FlagNotify::new())
        .build_with([Sink])
        .unwrap();
    publisher.put_update(&BTreeMap::from([("x", 2.0)]));
    let _ = server.poll();
    let reader = server.reader();
    let all_loaded = Arc::new(Barrier::new(THREADS));
    let counts: Vec<(u64, u64)> = (0..THREADS)
        .map(|_| {
            let (reader, all_loaded) = (reader.clone(), Arc::clone(&all_loaded));
            std::thread::spawn(move || {
                let first = allocations_in(|| assert_eq!(reader.load().seq(), 1));
                all_loaded.wait();
                let later = allocations_in(|| {
                    for _ in 0..100 {
                        assert_eq!(reader.load()["x"], 2.0);
                    }
                });
                (first, later)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    assert!(counts.iter().all(|&(first, _)| first <= 1), "{counts:?}");
    assert!(counts.iter().all(|&(_, later)| later == 0), "{counts:?}");
    assert!(counts.iter().any(|&(first, _)| first == 1), "{counts:?}");
}

#[test]
fn thread_notify_allocates_nothing_even_the_first_time_on_a_thread() {
    use queueserver::ThreadNotify;
    let (publisher, mut server) = Builder::new(BTreeMap::from([("x", 1.0)]))
        .notify(ThreadNotify::new())
        .build_with([Sink])
        .unwrap();
    let id = server.connection_ids().next().unwrap();
    let requester = server.requester();
    // A thread to wake, parked until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let parked = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::park();
            }
        })
    };
    server.notifier().bind(parked.thread().clone());
    let state = BTreeMap::from([("x", 2.0)]);
    // Each on a thread that never ran the crate's code before: the first notification on a
    // thread is the one that used to allocate.
    let mut publisher = std::thread::spawn(move || {
        let mut publisher = publisher;
        let n = allocations_in(|| publisher.put_update(&state));
        assert_eq!(n, 0, "put_update with ThreadNotify allocated");
        publisher
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        let n = allocations_in(|| requester.put_request(Request::key(id, "x")).unwrap());
        assert_eq!(n, 0, "put_request with ThreadNotify allocated");
    })
    .join()
    .unwrap();
    // Both notified: the flags were clear.
    assert!(server.has_pending_events());
    let _ = server.poll();
    assert_eq!(server.stats().requests_answered, 1);
    // Rebound to another thread, and unbound: still nothing allocated on notifying threads.
    server.notifier().bind(std::thread::current());
    let state = BTreeMap::from([("x", 3.0)]);
    let n = std::thread::scope(|s| {
        s.spawn(|| allocations_in(|| publisher.put_update(&state)))
            .join()
            .unwrap()
    });
    assert_eq!(n, 0);
    server.notifier().unbind();
    stop.store(true, std::sync::atomic::Ordering::Release);
    parked.thread().unpark();
    parked.join().unwrap();
}

#[test]
fn a_map_built_with_other_keys_is_rebuilt_once_per_buffer_the_last_when_the_poller_decides() {
    // Built with one key set, published with another: each of the three buffers is
    // rebuilt once, at the first publish that lands in it.
    let (mut publisher, mut server) = Builder::new(BTreeMap::from([("a", 0.0)]))
        .notify(FlagNotify::new())
        .build_with([Sink])
        .unwrap();
    let published = BTreeMap::from([("x", 1.0), ("y", 2.0)]);
    let mut allocating = Vec::new();
    let mut publish = |publisher: &mut queueserver::Publisher<_, _>| {
        if allocations_in(|| publisher.put_update(&published)) > 0 {
            allocating.push(publisher.published());
        }
    };
    for _ in 0..10 {
        publish(&mut publisher);
    }
    // The poller takes a snapshot: its old buffer, never rebuilt, goes back to the
    // computation, which rebuilds it at the second publish after.
    let _ = server.poll();
    for _ in 0..10 {
        publish(&mut publisher);
        let _ = server.poll();
    }
    assert_eq!(allocating, [1, 2, 12]);
}
