//! `archctl metrics [--serve ADDR]`: print, or serve GET /metrics over HTTP.
//! The server handles one request per connection, one connection at a
//! time, with read/write timeouts and a request-size cap, so a slow or
//! hostile client cannot pin memory or the process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use arch_image::ImageStore;

use crate::error::{io_err, Error, Result};
use crate::store::scan;

const MAX_REQUEST: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The current exposition text.
pub fn text(store: &ImageStore) -> Result<String> {
    let (records, unreadable) = arch_records::read_all(store.root())?;
    let entries = scan(store)?;
    Ok(crate::metrics::render(&records, unreadable, &entries))
}

pub fn run(store: &ImageStore, serve: Option<&str>) -> Result<i32> {
    let Some(addr) = serve else {
        print!("{}", text(store)?);
        return Ok(0);
    };
    let listener =
        TcpListener::bind(addr).map_err(|e| Error::Invalid(format!("listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(io_err("local address", addr))?;
    eprintln!("archctl: serving metrics on http://{local}/metrics");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = handle(store, stream) {
                    eprintln!("archctl: metrics request: {e}");
                }
            }
            Err(e) => eprintln!("archctl: accept: {e}"),
        }
    }
    Ok(0)
}

/// Read the request head (up to a blank line or the cap), answer, close.
pub fn handle(store: &ImageStore, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let (status, ctype, body) = match (method, target) {
        (Some("GET"), Some("/metrics")) => match text(store) {
            Ok(t) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", t),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        },
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
