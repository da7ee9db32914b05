//! `qs device`: a microcontroller that speaks `queueserver-link` (over a serial port, a
//! pty, or QEMU's `-serial` TCP socket), published on Zenoh as any computation is.
//!
//! The device's line feeds a relay (`queueserver_link::host::Bridge`), which
//! `Zenoh::publish` puts on the wire: values on `P/<name>`, `P/@snapshot`, gets through
//! the device's own request path (concurrent gets of one name are one GET on the line),
//! and the liveliness token on `P` while the device answers. With `--web ADDR`, a second
//! relay of the same bridge is served by `queueserver-web` (`WebView::publish`): the page
//! and its stream, gets from pages joining those from Zenoh on the line.

use super::{Mode, ZenohArgs};
use clap::Args;
use queueserver_link::host::{Bridge, DeviceValues, OpenError, Options as LinkOptions};
use queueserver_web::{Options as WebOptions, ViewAsker, WebView};
use queueserver_zenoh::{config, GetAsker, Options, Zenoh};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use zenoh::Wait;

/// `qs device`'s arguments.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The device: a serial port (/dev/ttyUSB0, /dev/ttyACM0), a pty, or tcp:HOST:PORT
    /// (QEMU's `-chardev socket,...,server=on` for `-serial`).
    #[arg(value_name = "ADDR")]
    address: String,
    /// The prefix to publish it under, e.g. lab/mcu.
    #[arg(long, value_name = "P")]
    prefix: String,
    /// Listen for Zenoh peers (`qs watch`, other programs) on ENDPOINT (repeatable)
    /// [default: tcp/127.0.0.1:7449 when neither -e nor -c is given].
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// The serial port's baud rate (ignored for tcp:).
    #[arg(long, value_name = "BAUD", default_value = "115200")]
    baud: u32,
    /// How long a get waits for the device, ms.
    #[arg(long, value_name = "MS", default_value = "2000", value_parser = super::millis)]
    get_timeout: Duration,
    /// At most N gets waiting for the device at once (a wildcard counts one per name).
    #[arg(long, value_name = "N", default_value = "256", value_parser = clap::value_parser!(u64).range(1..))]
    max_gets: u64,
    /// Every MS, print the line's counters on stdout, one JSON object a line: the host's
    /// (`host`: bytes, frames, garbage bytes, bad frames, gets sent, ...) and the device's
    /// own (`device`, asked with a ping: null while the line is down).
    #[arg(long, value_name = "MS", value_parser = super::millis)]
    stats: Option<Duration>,
    /// Also serve the device's web view (the page, its WebSocket stream, Foxglove's
    /// protocol) on ADDR, e.g. 127.0.0.1:7878 (port 0: any free port); its URL is printed
    /// on stderr. Every value in clear text to whoever reaches ADDR: keep it on loopback.
    #[arg(long, value_name = "ADDR")]
    web: Option<SocketAddr>,
}

/// The session's configuration and where it is reachable, in words: the command line's
/// `-c`, `-e`, `--mode` and `--listen`. Without `-e` or `-c`, a peer listening on
/// `config::DEFAULT_ENDPOINT`, where `qs` looks by default.
fn session_config(zenoh: &ZenohArgs, listen: &[String]) -> Result<(zenoh::Config, String), String> {
    let connect: Vec<&str> = zenoh.connect.iter().map(String::as_str).collect();
    let mut listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let bad = |e: zenoh::Error| format!("bad endpoint: {}", config::message(&e));
    let (config, client) = match &zenoh.config {
        None => {
            let client = zenoh
                .mode
                .map_or(!connect.is_empty(), |m| m == Mode::Client);
            if client {
                if !listen.is_empty() {
                    return Err(
                        "a client of a router listens on nothing: drop --listen, or \
                                add --mode peer"
                            .into(),
                    );
                }
                (config::client(&connect).map_err(bad)?, true)
            } else {
                if listen.is_empty() && connect.is_empty() {
                    listen.push(config::DEFAULT_ENDPOINT);
                }
                (config::peer(&listen, &connect).map_err(bad)?, false)
            }
        }
        Some(file) => {
            let mut config = config::from_file(file).map_err(|e| e.to_string())?;
            let mode = zenoh
                .mode
                .or_else(|| (!connect.is_empty()).then_some(Mode::Client))
                .filter(|_| zenoh.mode.is_some() || config::mode(&config).is_none());
            config::apply(&mut config, mode.map(Mode::name), &listen, &connect)
                .map_err(|e| format!("bad endpoint: {e}"))?;
            let client = config::mode(&config).as_deref() == Some("client");
            (config, client)
        }
    };
    let endpoints = |key: &str| {
        config
            .get_json(key)
            .ok()
            .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok())
            .unwrap_or_default()
            .join(", ")
    };
    let place = if client {
        format!(
            "as a client of the router at {}",
            endpoints("connect/endpoints")
        )
    } else {
        match (
            endpoints("listen/endpoints"),
            endpoints("connect/endpoints"),
        ) {
            (l, c) if c.is_empty() => format!("listening on {l}"),
            (l, c) if l.is_empty() => format!("as a peer of {c}"),
            (l, c) => format!("listening on {l}, a peer of {c}"),
        }
    };
    Ok((config, place))
}

/// Opens the device and the session, publishes the device, and follows its line: the
/// token is declared while the device answers. Runs until the process is stopped.
pub fn run(zenoh: &ZenohArgs, args: &DeviceArgs) -> Result<ExitCode, String> {
    let (zenoh_config, place) = session_config(zenoh, &args.listen)?;
    let options = LinkOptions {
        baud: args.baud,
        ..LinkOptions::default()
    };
    let max_gets = usize::try_from(args.max_gets).unwrap_or(usize::MAX);
    let bridge =
        Bridge::<GetAsker>::open(&args.address, options, max_gets).map_err(|e| match e {
            OpenError::BadAddress(_) => e.to_string(),
            OpenError::Io(_) => format!(
                "{}: {e}. Is the device there (a board on its USB-serial adapter, or QEMU with \
             -serial on that socket)? A serial port also needs read and write permission \
             (the dialout group, on most Linux systems).",
                args.address
            ),
        })?;
    let session = zenoh::open(zenoh_config).wait().map_err(|e| {
        format!(
            "cannot open a Zenoh session {place}: {}",
            config::message(&e)
        )
    })?;
    let result = publish(&bridge, &session, args, &place);
    // Closed before `main` returns: Zenoh must not run during process exit.
    let _ = session.close().wait();
    bridge.close();
    result
}

fn publish(
    bridge: &Bridge<GetAsker>,
    session: &zenoh::Session,
    args: &DeviceArgs,
    place: &str,
) -> Result<ExitCode, String> {
    let options = Options::new().with_get_timeout(args.get_timeout);
    let device = bridge.device();
    // The handshake first, so that the token is not declared only to be withdrawn.
    let _ = device.wait_connection(true, Duration::from_secs(2));
    let zenoh = Zenoh::publish(bridge.relay().clone(), session, &args.prefix, options)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "qs device: {} published under {} ({place}); `qs watch {}` shows it",
        args.address, args.prefix, args.prefix
    );
    let _view = args.web.map(|addr| serve_web(bridge, addr)).transpose()?;
    let mut live = None;
    let mut stats_at = args.stats.map(|every| Instant::now() + every);
    loop {
        let now = device.is_connected();
        if live != Some(now) {
            live = Some(now);
            zenoh.set_live(now).map_err(|e| config::message(&e))?;
            say(bridge, now);
        }
        if let (Some(at), Some(every)) = (stats_at, args.stats) {
            if Instant::now() >= at {
                print_stats(bridge);
                stats_at = Some(at.max(Instant::now() - every) + every);
            }
        }
        // Wakes when the line comes up or goes down, or when the counters are due.
        let wait = stats_at.map_or(Duration::from_secs(1), |at| {
            at.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        });
        let _ = device.wait_connection(!now, wait);
    }
}

/// Serves the device's web view on `addr`, from a relay of its own fed by the bridge's
/// line; says where on stderr.
fn serve_web(bridge: &Bridge<GetAsker>, addr: SocketAddr) -> Result<WebView<DeviceValues>, String> {
    let options = WebOptions::new().bind(addr);
    let relay = bridge.add_relay::<ViewAsker>(options.total_asks());
    let view = WebView::publish(relay, options)
        .map_err(|e| format!("cannot serve the web view on {addr}: {e}"))?;
    eprintln!("qs device: web view at {}", view.url());
    Ok(view)
}

/// Prints the host's counters and the device's on stdout, as one JSON line.
fn print_stats(bridge: &Bridge<GetAsker>) {
    let device = bridge.device();
    let own = device
        .is_connected()
        .then(|| device.device_stats(Duration::from_millis(500)).ok())
        .flatten();
    let line = serde_json::json!({ "host": device.counters(), "device": own });
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (the reader gone) is no reason to stop publishing.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Says on stderr whether the device answers.
fn say(bridge: &Bridge<GetAsker>, live: bool) {
    if !live {
        eprintln!(
            "qs device: the device does not answer (no token, gets refused): opening its line \
             again until it does"
        );
        return;
    }
    let names: Vec<String> = bridge
        .device()
        .schema()
        .map(|schema| schema.keys.iter().map(|k| k.name.clone()).collect())
        .unwrap_or_default();
    eprintln!(
        "qs device: the device answers: {} values ({})",
        names.len(),
        names.join(", ")
    );
}
