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

/// A Zenoh configuration file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The file, as given.
    pub path: std::path::PathBuf,
    /// What is wrong with it, in Zenoh's words without its source locations.
    pub why: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot use the Zenoh configuration file {}: {}",
            self.path.display(),
            self.why
        )
    }
}

impl std::error::Error for FileError {}

/// Reads a Zenoh configuration file as Zenoh's own tools do (`-c FILE`,
/// [`Config::from_file`]): JSON5 (`.json5`, `.json`) or YAML (`.yaml`, `.yml`), every key of
/// Zenoh's `DEFAULT_CONFIG.json5` (mode, endpoints, scouting, TLS, user/password
/// authentication, access control, timeouts...), unset keys at Zenoh's defaults. Note
/// that Zenoh's default turns multicast scouting *on*: a file that should talk only to its
/// endpoints says `scouting: { multicast: { enabled: false } }`.
///
/// **Any thread.** Blocks on the file; allocates.
///
/// # Errors
///
/// When the file cannot be read or is no valid configuration: the error names the file
/// and says why.
pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Config, FileError> {
    let path = path.as_ref();
    let why = match std::fs::metadata(path) {
        Err(error) => error.to_string(),
        Ok(meta) if !meta.is_file() => "not a file".to_owned(),
        Ok(_) => match Config::from_file(path) {
            Ok(config) => return Ok(config),
            Err(error) => message(&error),
        },
    };
    Err(FileError {
        path: path.to_owned(),
        why,
    })
}

/// The mode a configuration gives its session: `"peer"`, `"client"` or `"router"`; `None`
/// when it sets none (Zenoh then opens a peer).
pub fn mode(config: &Config) -> Option<String> {
    let json = config.get_json("mode").ok()?;
    serde_json::from_str::<Option<String>>(&json).ok().flatten()
}

/// Puts `mode` (`"peer"` or `"client"`) and, when not empty, the `listen` and `connect`
/// endpoints into `config`, replacing what it had there: what a command line's options do
/// to a configuration file.
///
/// # Errors
///
/// When an endpoint is no valid Zenoh endpoint; the error says which, without Zenoh's
/// source locations.
pub fn apply(
    config: &mut Config,
    mode: Option<&str>,
    listen: &[&str],
    connect: &[&str],
) -> Result<(), String> {
    if let Some(mode) = mode {
        config
            .insert_json5("mode", &serde_json::Value::from(mode).to_string())
            .map_err(|e| format!("mode {mode}: {}", message(&e)))?;
    }
    for (key, endpoints) in [("listen/endpoints", listen), ("connect/endpoints", connect)] {
        if !endpoints.is_empty() {
            config
                .insert_json5(key, &json_list(endpoints))
                .map_err(|_| {
                    format!(
                        "not a Zenoh endpoint: {} (write PROTOCOL/ADDRESS, e.g. \
                     tcp/127.0.0.1:7449, tcp/[::1]:7447, unixsock-stream/PATH)",
                        endpoints.join(", ")
                    )
                })?;
        }
    }
    Ok(())
}

/// A Zenoh error as a person reads it: Zenoh's own text without the source locations it
/// appends (`... at /path/to/zenoh/src/file.rs:123.`), which tell a user nothing.
pub fn message(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        // A location: a path ending in `.rs:LINE`, then a full stop.
        let end = after
            .find(|c: char| c.is_whitespace() || "\"',;)}]".contains(c))
            .unwrap_or(after.len());
        let word = after[..end].trim_end_matches('.');
        let is_location = word
            .rsplit_once(".rs:")
            .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
        if is_location {
            rest = &after[end..];
        } else {
            out.push_str(" at ");
            rest = after;
        }
    }
    out.push_str(rest);
    let out = out.replace(" - Caused by ", ": ");
    out.trim().trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_their_source_locations_and_nothing_else() {
        assert_eq!(
            message(&"Invalid Key Expr `a//b`: empty chunk at /home/u/.cargo/registry/src/x/zenoh-keyexpr-1.10.2/src/key_expr/borrowed.rs:777."),
            "Invalid Key Expr `a//b`: empty chunk"
        );
        assert_eq!(
            message(&"Unable to connect to any of [tcp/127.0.0.1:1]! at src/net/runtime/orchestrator.rs:12. - Caused by refused at x.rs:3."),
            "Unable to connect to any of [tcp/127.0.0.1:1]!: refused"
        );
        assert_eq!(message(&"look at me"), "look at me");
        assert_eq!(
            message(
                &r#"Json5Err(Message { msg: "bad: x at /a/endpoint.rs:615.", location: None })"#
            ),
            r#"Json5Err(Message { msg: "bad: x", location: None })"#
        );
    }

    #[test]
    fn a_missing_file_is_named_with_the_reason() {
        let error = from_file("/nonexistent/zenoh.json5").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/nonexistent/zenoh.json5"), "{text}");
        assert!(!text.contains(".rs:"), "{text}");
    }

    #[test]
    fn apply_sets_the_mode_and_replaces_endpoints() {
        let mut config = peer(&[], &["tcp/127.0.0.1:1"]).unwrap();
        assert_eq!(mode(&config).as_deref(), Some("peer"));
        apply(&mut config, Some("client"), &[], &["tcp/127.0.0.1:2"]).unwrap();
        assert_eq!(mode(&config).as_deref(), Some("client"));
        assert_eq!(
            config
                .get_json("connect/endpoints")
                .unwrap()
                .replace(' ', ""),
            r#"["tcp/127.0.0.1:2"]"#
        );
        let error = apply(&mut config, None, &["nonsense"], &[]).unwrap_err();
        assert!(
            error.contains("nonsense") && !error.contains(".rs:"),
            "{error}"
        );
    }
}
