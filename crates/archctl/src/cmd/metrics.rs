//! `archctl metrics [--serve ADDR]`: print, or serve GET /metrics over HTTP.
//! The server handles one request per connection, each connection on its
//! own thread (at most [`MAX_CLIENTS`] at once; more are turned away with
//! 503), with a deadline for the whole request and a request-size cap, so
//! a slow or hostile client can neither pin memory nor hold up the others.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use arch_image::ImageStore;

use crate::error::{io_err, Error, Result};
use crate::store::scan;

const MAX_REQUEST: usize = 8192;
/// The whole request - reading it, rendering, writing the answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CLIENTS: usize = 32;

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
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("archctl: accept: {e}");
                continue;
            }
        };
        use std::sync::atomic::Ordering::SeqCst;
        if busy.fetch_add(1, SeqCst) >= MAX_CLIENTS {
            busy.fetch_sub(1, SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        }
        let (store, done) = (store.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-client".into())
            .spawn(move || {
                if let Err(e) = handle(&store, stream) {
                    eprintln!("archctl: metrics request: {e}");
                }
                done.fetch_sub(1, SeqCst);
            });
        if let Err(e) = spawned {
            eprintln!("archctl: no thread for a metrics client: {e}");
            busy.fetch_sub(1, SeqCst);
        }
    }
    Ok(0)
}

/// The time left before `deadline`, or a timeout error.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "request deadline passed"))
}

/// Read the request head (up to a blank line or the cap), answer, close.
pub fn handle(store: &ImageStore, mut stream: TcpStream) -> std::io::Result<()> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        // A client dripping a byte at a time still meets the deadline.
        stream.set_read_timeout(Some(left(deadline)?))?;
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
    stream.set_write_timeout(Some(left(deadline)?))?;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
