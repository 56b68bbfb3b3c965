//! Encrypt or decrypt one file by hand, stdin to stdout:
//! `crypt encrypt|decrypt KEY_FILE IDENTITY < in > out`. The key file is
//! checked as the shim will check it (root-owned, 0600, 64 hex). Used to
//! cross-check the format with tools/decrypt.py.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use arch_imgcrypt::{DecryptReader, EncryptWriter, Key};

fn run() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, key_file, identity] = &args[..] else {
        return Err(io::Error::other(
            "usage: crypt encrypt|decrypt KEY_FILE IDENTITY",
        ));
    };
    let key = Key::load(Path::new(key_file))?;
    let (stdin, stdout) = (io::stdin().lock(), io::stdout().lock());
    match mode.as_str() {
        "encrypt" => {
            let mut w = EncryptWriter::new(stdout, &key, identity.as_bytes())?;
            io::copy(&mut { stdin }, &mut w)?;
            w.finish()?.flush()
        }
        "decrypt" => {
            let mut r = DecryptReader::new(stdin, &key, identity.as_bytes())?;
            let mut out = stdout;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return out.flush();
                }
                out.write_all(&buf[..n])?;
            }
        }
        _ => Err(io::Error::other("mode is encrypt or decrypt")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crypt: {e}");
            ExitCode::FAILURE
        }
    }
}
