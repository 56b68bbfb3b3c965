//! A whole suite's leak check, for suites whose tests run in parallel (the
//! e2e suite), where one test's baseline would count another's containers:
//! `arch-leaks baseline FILE` before the suite, `arch-leaks check FILE`
//! after it. The check fails (exit 1, the tasks listed) if orphaned
//! container tasks or CRIU workers appeared (see arch_e2e::leaks).

use std::time::Duration;

use arch_e2e::leaks;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (verb, file) = match args.as_slice() {
        [verb, file] => (verb.as_str(), file),
        _ => usage(),
    };
    match verb {
        "baseline" => {
            let pids: Vec<String> = leaks::baseline().iter().map(i32::to_string).collect();
            std::fs::write(file, pids.join("\n")).expect("writing the baseline");
        }
        "check" => {
            let text = std::fs::read_to_string(file).expect("reading the baseline");
            let before: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
            match leaks::no_new_orphans(&before, Duration::from_secs(30)) {
                Ok(()) => eprintln!("[leaks] no orphaned container task or CRIU worker"),
                Err(e) => {
                    eprintln!("[leaks] {e}");
                    std::process::exit(1);
                }
            }
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: arch-leaks baseline|check FILE");
    std::process::exit(2)
}
