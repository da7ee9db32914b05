//! The Cortex-M example's `link` firmware under QEMU, its UART on a TCP socket on
//! 127.0.0.1, and a proxy that spoils that line on request: for `tests/qemu.rs` here and
//! queueserver-zenoh's `tests/firmware.rs` (`qs device` on the firmware).

use queueserver_link::host::Value;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The firmware's channels: `ch1` … `ch15`, besides `step`.
pub const CHANNELS: u32 = 15;

/// What the firmware publishes at `step` (examples/cortex-m/src/plant.rs).
pub fn value_of(step: u64, name: &str) -> Value {
    let step = step as u32;
    if name == "step" {
        return Value::U64(step.into());
    }
    let k: u32 = name
        .strip_prefix("ch")
        .and_then(|k| k.parse().ok())
        .expect("a channel");
    Value::F32((step.wrapping_mul(7 * k - 6) % 1000) as f32 * 0.5)
}

/// The firmware's names, in its order.
pub fn names() -> Vec<String> {
    std::iter::once("step".to_owned())
        .chain((1..=CHANNELS).map(|k| format!("ch{k}")))
        .collect()
}

/// QEMU running a firmware, killed (by its PID) when dropped; the lines it prints (its
/// semihosting console) are kept.
pub struct Qemu {
    pub child: Child,
    pub port: u16,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Qemu {
    /// Starts the firmware the environment variable `variable` names (`.ci/cortex-m`
    /// builds it and sets it), UART0 on a TCP socket on a free port of 127.0.0.1.
    pub fn start(variable: &str) -> Self {
        let elf = std::env::var(variable)
            .unwrap_or_else(|_| panic!("{variable} names the firmware (.ci/cortex-m sets it)"));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("qemu-system-arm")
            .args(["-cpu", "cortex-m4", "-machine", "mps2-an386"])
            .args(["-display", "none", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(icount())
            .arg("-chardev")
            .arg(format!(
                "socket,id=link,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on"
            ))
            .args(["-serial", "chardev:link", "-kernel", &elf])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("qemu-system-arm runs (.ci/cortex-m installs it)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    println!("firmware: {line}");
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, port, lines }
    }

    /// The UART's socket, as the host side opens it.
    pub fn address(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// Whether QEMU listens on the UART's socket yet.
    pub fn listens(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// No check of the firmware has failed so far.
    pub fn assert_running(&self) {
        let lines = self.lines.lock().unwrap();
        assert!(
            !lines.iter().any(|l| l.contains("FAIL")),
            "a firmware check failed"
        );
    }

    /// Waits for a line of the firmware's output that contains `text`.
    pub fn wait_line(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("QEMU exited with {status} before printing {text:?}");
            }
            assert!(Instant::now() < deadline, "the firmware prints {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The firmware's cost line for `name`: (min, median, max).
    pub fn cost(&mut self, name: &str, timeout: Duration) -> (u32, u32, u32) {
        let line = self.wait_line(name, timeout);
        let field = |key: &str| -> u32 {
            let rest = &line[line.find(key).unwrap() + key.len()..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        (field(" min "), field(" median "), field(" max "))
    }
}

/// QEMU's `-icount` setting: `QEMU_ICOUNT` (empty for none), `shift=0` by default (one
/// instruction per nanosecond, so the firmware's stopwatch counts instructions exactly).
fn icount() -> Vec<String> {
    match std::env::var("QEMU_ICOUNT") {
        Ok(setting) if setting.is_empty() => vec![],
        Ok(setting) => vec!["-icount".into(), setting],
        Err(_) => vec!["-icount".into(), "shift=0".into()],
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a [`Proxy`] is told.
#[derive(Default)]
pub struct Spoil {
    /// Bytes to put into the device's stream toward the host.
    pub to_host: Mutex<Vec<u8>>,
    /// Bytes to put into the host's stream toward the device.
    pub to_device: Mutex<Vec<u8>>,
    /// Forward nothing either way (the line goes silent).
    pub stalled: AtomicBool,
    stop: AtomicBool,
}

/// A TCP proxy between the host side and QEMU that puts bytes of garbage into either
/// stream when asked, or goes silent. One host at a time; a host that closes is
/// followed by the next.
pub struct Proxy {
    pub port: u16,
    pub spoil: Arc<Spoil>,
}

impl Proxy {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let spoil = Arc::new(Spoil::default());
        {
            let spoil = Arc::clone(&spoil);
            std::thread::spawn(move || {
                while !spoil.stop.load(Ordering::Acquire) {
                    let Ok((host, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let Ok(device) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    forward(host, device, &spoil);
                }
            });
        }
        Self { port, spoil }
    }

    pub fn address(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.spoil.stop.store(true, Ordering::Release);
    }
}

/// Moves `bytes` (if any) into `to`; false if `to` failed.
fn inject(bytes: &Mutex<Vec<u8>>, to: &mut TcpStream) -> bool {
    let mut bytes = bytes.lock().unwrap();
    if bytes.is_empty() {
        return true;
    }
    let sent = to.write_all(&bytes).is_ok();
    bytes.clear();
    sent
}

/// Forwards both ways until either side closes.
fn forward(mut host: TcpStream, mut device: TcpStream, spoil: &Spoil) {
    for s in [&host, &device] {
        s.set_nonblocking(true).unwrap();
        s.set_nodelay(true).unwrap();
    }
    let mut buf = [0u8; 4096];
    while !spoil.stop.load(Ordering::Acquire) {
        let mut idle = true;
        let stalled = spoil.stalled.load(Ordering::Acquire);
        if !stalled {
            if !inject(&spoil.to_host, &mut host) || !inject(&spoil.to_device, &mut device) {
                return;
            }
            match device.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    idle = false;
                    if host.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        match host.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                idle = false;
                if !stalled && device.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
