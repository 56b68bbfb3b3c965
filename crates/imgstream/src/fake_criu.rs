//! CRIU's side of the protocol, for tests: the same frames, the same
//! one-byte SCM_RIGHTS message, real pipes.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::wire::{self, Reply, Request};

pub struct FakeCriu {
    pub sock: UnixStream,
}

impl FakeCriu {
    pub fn connect(dir: &Path, socket: &str) -> Self {
        let sock = UnixStream::connect(dir.join(socket)).expect("connect to the streamer");
        FakeCriu { sock }
    }

    pub fn request(&mut self, name: &str) {
        self.sock
            .write_all(&wire::frame(&Request {
                filename: name.into(),
            }))
            .unwrap();
    }

    pub fn reply(&mut self) -> bool {
        let mut len = [0u8; 4];
        self.sock.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_ne_bytes(len) as usize];
        self.sock.read_exact(&mut body).unwrap();
        <Reply as prost::Message>::decode(body.as_slice())
            .unwrap()
            .exists
    }

    fn send_fd(&self, fd: &OwnedFd) {
        let raw = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(&[0u8])],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }

    /// Dump: announces `name`, passes the read end, returns the write end.
    pub fn open_write(&mut self, name: &str) -> File {
        self.request(name);
        let (r, w) = nix::unistd::pipe().unwrap();
        self.send_fd(&r);
        File::from(w)
    }

    /// Restore: `None` when the streamer says the file does not exist.
    pub fn open_read(&mut self, name: &str) -> Option<File> {
        self.request(name);
        if !self.reply() {
            return None;
        }
        let (r, w) = nix::unistd::pipe().unwrap();
        self.send_fd(&w);
        Some(File::from(r))
    }
}
