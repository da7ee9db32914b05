//! Ready-made Zenoh configurations: loopback and explicit endpoints, multicast scouting
//! off.
//!
//! Multicast scouting (Zenoh's default) makes every session on the network find every
//! other; these configurations turn it off, so a session talks only to the endpoints it is
//! given. Two topologies:
//!
//! - **peer to peer, no router**: the computation listens ([`peer`] with `listen`, by
//!   default on [`DEFAULT_ENDPOINT`]), the clients connect to it ([`peer`] with `connect`).
//!   What [`default`] and the `qs` tool do out of the box.
//! - **through a router** (`zenohd`): computations and clients all connect to it in
//!   *client* mode ([`client`]). Sessions in peer mode that connect only to a router, with
//!   gossip off, do not reach each other's data through it; client sessions do.

use zenoh::Config;

/// Where a computation listens by default, and where `qs` looks by default: TCP on
/// loopback, port 7449 (one above `zenohd`'s 7447 and its 7448 for the REST plugin).
pub const DEFAULT_ENDPOINT: &str = "tcp/127.0.0.1:7449";

/// A value for `ZENOH_RUNTIME` that keeps Zenoh to two worker threads: the receive,
/// accept and network runtimes handed to one application thread, and the transmit thread.
pub const SMALL_RUNTIME: &str =
    "(rx: (handover: app), acc: (handover: app), net: (handover: app), app: (worker_threads: 1))";

/// A peer that listens on `listen` and connects to `connect`, multicast scouting off.
///
/// # Errors
///
/// When an endpoint is no valid Zenoh endpoint (`tcp/127.0.0.1:7449`,
/// `unixsock-stream/path`).
pub fn peer(listen: &[&str], connect: &[&str]) -> zenoh::Result<Config> {
    let mut config = Config::default();
    config.insert_json5("mode", "\"peer\"")?;
    base(&mut config, listen, connect)?;
    Ok(config)
}

/// A client of the router at `connect` (`tcp/host:port`), multicast scouting off.
///
/// Opening the session fails when no router answers. Once open, a client that loses its
/// router tries again every 100 ms at first, then up to every second, and carries on
/// (its subscribers, queryables and tokens declared anew) once the router is back.
///
/// # Errors
///
/// As [`peer`].
pub fn client(connect: &[&str]) -> zenoh::Result<Config> {
    let mut config = Config::default();
    config.insert_json5("mode", "\"client\"")?;
    base(&mut config, &[], connect)?;
    config.insert_json5(
        "connect/retry",
        "{period_init_ms: 100, period_max_ms: 1000, period_increase_factor: 2}",
    )?;
    Ok(config)
}

/// A computation's default: a peer listening on [`DEFAULT_ENDPOINT`].
pub fn default() -> Config {
    peer(&[DEFAULT_ENDPOINT], &[]).expect("the default endpoint is valid")
}

fn base(config: &mut Config, listen: &[&str], connect: &[&str]) -> zenoh::Result<()> {
    config.insert_json5("scouting/multicast/enabled", "false")?;
    config.insert_json5("listen/endpoints", &json_list(listen))?;
    config.insert_json5("connect/endpoints", &json_list(connect))?;
    Ok(())
}

fn json_list(items: &[&str]) -> String {
    serde_json::to_string(items).expect("a list of strings serializes")
}
