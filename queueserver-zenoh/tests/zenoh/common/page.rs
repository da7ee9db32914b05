//! A page of `qs device --web`'s view, as a program reads it: the web view's own test
//! client (queueserver-web's `tests/common`) on its WebSocket stream, and the page itself
//! over plain HTTP.

#[path = "../../../../queueserver-web/tests/common/mod.rs"]
mod web;

use std::io::{Read, Write};
use std::net::TcpStream;
pub use web::Page;

/// A WebSocket client of the stream of the view at `addr` (`127.0.0.1:PORT`); reads time
/// out after 20 s.
pub fn connect(addr: &str) -> Page {
    let addr = addr.parse().expect("an address");
    let (socket, _) = web::handshake(addr, "/ws", None, None).expect("the upgrade is accepted");
    Page { socket }
}

/// Asks the view for the value of `name`: the answer is a message of type `answer` with
/// `id`.
pub fn ask(page: &mut Page, id: u64, name: &str) {
    page.send(&serde_json::json!({ "type": "ask", "id": id, "name": name }).to_string());
}

/// `GET /` from the view at `addr`: the whole HTTP response, as text.
pub fn get_page(addr: &str) -> String {
    let mut http = TcpStream::connect(addr).unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http.write_all(request.as_bytes()).unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    page
}
