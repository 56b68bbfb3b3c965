//! CRIU's image-streamer protocol (criu/img-streamer.c, images/img-streamer.proto,
//! include/common/scm-code.c in CRIU 4.1.1), as seen from the streamer:
//!
//! * one UNIX stream connection per CRIU run, to `streamer-capture.sock`
//!   (dump) or `streamer-serve.sock` (restore) in CRIU's `-D` directory;
//! * each image file opens with a request frame: a `u32` length in host
//!   byte order, then `img_streamer_request_entry { required string filename = 1 }`;
//! * restore only: the streamer answers with a frame holding
//!   `img_streamer_reply_entry { required bool exists = 1 }`; on `false` CRIU
//!   treats the image as absent and sends nothing more for it;
//! * then CRIU passes one end of a fresh pipe with SCM_RIGHTS on a one-byte
//!   message (the write end is CRIU's on dump, the read end on restore); the
//!   file's bytes flow through the pipe and its EOF ends the file;
//! * CRIU closes the connection when it opens no more files; there is no
//!   closing message and no status: errors reach CRIU only as a pipe or
//!   socket that breaks.

use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use prost::Message;

use crate::error::{Result, StreamError};

/// CRIU's socket for `criu dump --stream`.
pub const CAPTURE_SOCKET: &str = "streamer-capture.sock";
/// CRIU's socket for `criu restore --stream`.
pub const SERVE_SOCKET: &str = "streamer-serve.sock";

/// A file name is at most a path; anything longer is not CRIU talking.
const MAX_FRAME: u32 = 4096;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, required, tag = "1")]
    pub filename: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(bool, required, tag = "1")]
    pub exists: bool,
}

/// Reads the next request; `None` when CRIU closed the connection between
/// requests (the normal end). A connection cut inside a frame is an error.
pub fn read_request(sock: &mut impl Read) -> Result<Option<Request>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match sock.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(StreamError::Protocol(
                    "connection closed inside a frame header".into(),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Socket(e)),
        }
    }
    let len = u32::from_ne_bytes(len);
    if len > MAX_FRAME {
        return Err(StreamError::Protocol(format!("frame of {len} bytes")));
    }
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            StreamError::Protocol("connection closed inside a request".into())
        }
        _ => StreamError::Socket(e),
    })?;
    Request::decode(body.as_slice())
        .map(Some)
        .map_err(|e| StreamError::Protocol(format!("request: {e}")))
}

/// Frames a message as CRIU's `pb_write_one` does.
pub fn frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_ne_bytes());
    out.extend_from_slice(&body);
    out
}

pub fn write_reply(sock: &mut impl Write, exists: bool) -> Result<()> {
    sock.write_all(&frame(&Reply { exists }))
        .map_err(StreamError::Socket)
}

/// Receives the pipe end CRIU passes after a request. Only the one dummy
/// byte is read, so the next request's frame stays in the socket.
pub fn recv_pipe(sock: &UnixStream) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| StreamError::Socket(e.into()))?,
        }
    };
    if msg.bytes == 0 {
        return Err(StreamError::Protocol(
            "connection closed before the pipe came".into(),
        ));
    }
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| StreamError::Socket(e.into()))? {
        if let ControlMessageOwned::ScmRights(r) = c {
            fds.extend(r);
        }
    }
    // Own every received fd first, so extras are closed, not leaked.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || owned.len() != 1 {
        return Err(StreamError::Protocol(format!(
            "expected one pipe, got {} fds",
            owned.len()
        )));
    }
    Ok(owned.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_criu_pb_write_one() {
        // length (host order) + tag 1 varint; `required` must encode false too,
        // or protobuf-c in CRIU refuses the reply.
        assert_eq!(frame(&Reply { exists: false }), [2, 0, 0, 0, 0x08, 0x00]);
        assert_eq!(frame(&Reply { exists: true }), [2, 0, 0, 0, 0x08, 0x01]);
        let req = frame(&Request {
            filename: "pages-1.img".into(),
        });
        assert_eq!(&req[..6], &[13, 0, 0, 0, 0x0a, 11]);
        assert_eq!(&req[6..], b"pages-1.img");
    }

    #[test]
    fn request_end_and_truncation() {
        assert!(read_request(&mut &[][..]).unwrap().is_none());
        let f = frame(&Request {
            filename: "x".into(),
        });
        assert_eq!(read_request(&mut &f[..]).unwrap().unwrap().filename, "x");
        assert!(matches!(
            read_request(&mut &f[..2]),
            Err(StreamError::Protocol(_))
        ));
        assert!(matches!(
            read_request(&mut &f[..5]),
            Err(StreamError::Protocol(_))
        ));
        let huge = 1_000_000u32.to_ne_bytes();
        assert!(matches!(
            read_request(&mut &huge[..]),
            Err(StreamError::Protocol(_))
        ));
    }
}
