//! `archctl`: parse arguments, run, print errors as one line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Like any Unix filter: `archctl ls | head` ends quietly on EPIPE.
    // SAFETY: restoring the default disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = archctl::cli::Cli::parse(); // usage errors exit 2
    match archctl::cmd::run(cli).map_err(anyhow::Error::from) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // The library's errors already carry their causes in Display.
            let msg = archctl::escape::printable(&e.to_string().replace('\n', "; "));
            eprintln!("archctl: {msg}");
            ExitCode::from(1)
        }
    }
}
