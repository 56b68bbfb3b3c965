use arch_e2e::{ctr, unique_id};

/// Many containers at once, each with its own output and exit code.
#[test]
fn twenty_four_containers_at_once() {
    let c = ctr();
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let id = unique_id("many");
                let r = c.run_container(
                    &id,
                    &[],
                    &["sh", "-c", &format!("sleep 0.5; echo c{i}; exit {}", i % 7)],
                );
                (i, r)
            })
        })
        .collect();
    for h in handles {
        let (i, r) = h.join().unwrap();
        assert_eq!(r.code, i % 7, "container {i}: {}", r.stderr);
        assert_eq!(r.stdout, format!("c{i}\n"));
    }
}
