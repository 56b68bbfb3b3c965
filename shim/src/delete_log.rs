//! The `delete` action's log. containerd runs `delete` for a dead shim
//! without the log pipe a serving shim writes to, and logs whatever the
//! action writes on stderr ("warnings while cleaning up dead shim"). The
//! shim crate sets no logger for it, so without this its warnings (a
//! stray CRIU killed, temporaries it could not remove) were lost.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{}", line(record));
        }
    }

    fn flush(&self) {}
}

/// One warning as containerd will log it.
fn line(record: &Record) -> String {
    format!("{}: {}", record.level(), record.args())
}

/// Sends warnings and errors to stderr; call once, before the action.
pub fn init() {
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_are_written_and_nothing_else() {
        let meta = |level| Metadata::builder().level(level).build();
        for (level, kept) in [
            (Level::Error, true),
            (Level::Warn, true),
            (Level::Info, false),
            (Level::Debug, false),
        ] {
            assert_eq!(Stderr.enabled(&meta(level)), kept, "{level}");
        }
        let args = format_args!("c1: killed CRIU left by the dead shim: [7]");
        let record = Record::builder().level(Level::Warn).args(args).build();
        assert_eq!(
            line(&record),
            "WARN: c1: killed CRIU left by the dead shim: [7]"
        );
    }
}
