//! Older generations (issue 16 §1): their names, keeping the newest N,
//! cleanup around them, and a restorer taking an older one.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::generations::{gen_name, parse_gen};
use crate::tests::info;
use crate::*;

fn commit(store: &ImageStore, key: &str, payload: &str) {
    let st = store.begin("ns", key).unwrap();
    fs::write(st.path().join(CONFIG), payload).unwrap();
    st.commit(info()).unwrap();
}

fn payload(dir: &Path) -> String {
    fs::read_to_string(dir.join(CONFIG)).unwrap()
}

/// The payloads of the key's older generations, newest first.
fn gens(store: &ImageStore, key: &str) -> Vec<String> {
    let g = store.generations("ns", key).unwrap();
    g.iter().map(|g| payload(&g.path)).collect()
}

fn names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("ns"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn generation_names_are_their_own_kind() {
    let at = Timestamp {
        secs: 1_700_000_000,
        nanos: 42,
    };
    let name = gen_name("job", at);
    assert_eq!(name, "job@gen-1700000000-000000042");
    assert_eq!(parse_gen(name.split_once('@').unwrap().1), Some(at));
    assert!(validate_key(&name).is_err(), "never a key");
    for other in [
        "tmp-1-2-abc",
        "old-1-2-abc",
        "taken-1-2-abc",
        "lease-1-2-abc",
        "failed-17-abcdef12",
        "restored",
        "claim",
        "gen-",
        "gen-1",
        "gen-1-42",
        "gen-x-000000042",
        "gen-1-00000004x",
        "gen-1-000000042-x",
        "gen-1-1000000000",
    ] {
        assert!(!is_generation(other), "{other}");
    }
}

#[test]
fn one_generation_keeps_only_the_newest_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path());
    for p in ["a", "b", "c"] {
        commit(&store, "k", p);
    }
    assert_eq!(names(tmp.path()), ["k"]);
    assert!(gens(&store, "k").is_empty());
}

#[test]
fn a_commit_keeps_the_newest_n_images_of_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(3);
    for p in ["a", "b", "c", "d", "e"] {
        commit(&store, "k", p);
    }
    commit(&store, "other", "x");
    assert_eq!(payload(&tmp.path().join("ns/k")), "e");
    assert_eq!(gens(&store, "k"), ["d", "c"], "newest first, N-1 older");
    assert!(gens(&store, "other").is_empty(), "per key");
    // Each one is a whole valid image, named by its own commit time.
    for g in store.generations("ns", "k").unwrap() {
        let img = store.open_generation("ns", "k", &g).unwrap();
        assert_eq!(img.manifest().created_at, g.created_at);
    }
    // A host that lowers the setting keeps no more than it says.
    let one = ImageStore::new(tmp.path()).with_generations(2);
    commit(&one, "k", "f");
    assert_eq!(gens(&one, "k"), ["e"]);
    assert_eq!(
        ImageStore::new(tmp.path()).with_generations(99).generations,
        MAX_GENERATIONS
    );
}

#[test]
fn cleanup_leaves_generations_alone_until_a_restore_supersedes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(3);
    for p in ["a", "b", "c"] {
        commit(&store, "k", p);
    }
    // However old, a generation is no temporary.
    assert_eq!(store.cleanup_stale_temps(Duration::ZERO).unwrap(), 0);
    assert_eq!(gens(&store, "k"), ["b", "a"]);
    // A restorer retired "b" (taken from its generation) and died before
    // retiring the older ones: "a" is older state than what was restored.
    let b = store.generations("ns", "k").unwrap()[0].clone();
    fs::rename(&b.path, tmp.path().join("ns/k@restored")).unwrap();
    let stale = store.stale_temps(Duration::from_secs(3600)).unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].why, StaleWhy::Superseded);
    assert!(stale[0].restore_to.is_none(), "never brought back");
    store
        .cleanup_stale_temps(Duration::from_secs(3600))
        .unwrap();
    assert!(gens(&store, "k").is_empty());
    assert_eq!(payload(&tmp.path().join("ns/k")), "c", "the newest stays");
    // Generations of the new run, newer than the restored image, stay
    // (they become generations an interval after the restore; change
    // times tick in jiffies).
    std::thread::sleep(Duration::from_millis(50));
    commit(&store, "k", "d");
    store.cleanup_stale_temps(Duration::ZERO).unwrap();
    assert_eq!(gens(&store, "k"), ["c"]);
}

#[test]
fn a_restorer_falls_back_to_older_generations_newest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(3);
    for p in ["a", "b", "c"] {
        commit(&store, "k", p);
    }
    let newest = store.take("ns", "k").unwrap();
    assert_eq!(newest.origin(), "k");
    newest.fail("pages: checksum mismatch").unwrap();
    let one = ImageStore::new(tmp.path());
    assert!(
        one.take_generation("ns", "k", None).unwrap().is_none(),
        "a host keeping one image never falls back"
    );
    let b = store.take_generation("ns", "k", None).unwrap().unwrap();
    assert!(is_generation(b.origin().split_once('@').unwrap().1));
    assert_eq!(payload(b.dir()), "b");
    // What it took is its own: no one else sees it as a generation.
    assert_eq!(gens(&store, "k"), ["a"]);
    b.fail("criu restore failed").unwrap();
    let a = store.take_generation("ns", "k", None).unwrap().unwrap();
    assert_eq!(payload(a.dir()), "a");
    assert!(store.take_generation("ns", "k", None).unwrap().is_none());
    a.retire().unwrap();
    assert_eq!(payload(&tmp.path().join("ns/k@restored")), "a");
}

#[test]
fn restoring_a_generation_retires_the_older_ones_of_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(4);
    for p in ["a", "b", "c", "d"] {
        commit(&store, "k", p);
    }
    store.take("ns", "k").unwrap().fail("bad").unwrap();
    let c = store.take_generation("ns", "k", None).unwrap().unwrap();
    assert_eq!(payload(c.dir()), "c");
    c.retire().unwrap();
    assert!(gens(&store, "k").is_empty(), "a and b never come back");
    assert!(store.take_generation("ns", "k", None).unwrap().is_none());
}

#[test]
fn a_generation_taken_and_dropped_goes_back_as_the_newest_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(2);
    for p in ["a", "b"] {
        commit(&store, "k", p);
    }
    store.take("ns", "k").unwrap().fail("bad").unwrap();
    let a = store.take_generation("ns", "k", None).unwrap().unwrap();
    drop(a); // the container was deleted before Start
    assert_eq!(payload(&tmp.path().join("ns/k")), "a");
    assert!(gens(&store, "k").is_empty());
}

#[test]
fn a_leased_generation_keeps_its_lease_until_decided() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(2);
    for p in ["a", "b"] {
        commit(&store, "k", p);
    }
    store.take("ns", "k").unwrap().fail("bad").unwrap();
    let lease = Some(("host-a:1:c", Duration::from_secs(60)));
    let mut a = store.take_generation("ns", "k", lease).unwrap().unwrap();
    let leases = || {
        names(tmp.path())
            .into_iter()
            .filter(|n| n.starts_with("k@lease-"))
            .count()
    };
    assert_eq!(leases(), 1);
    // Another host's cleanup leaves a live lease's image where it is.
    let other = ImageStore::new(tmp.path()).with_lease(Duration::from_secs(60));
    assert_eq!(
        other
            .cleanup_stale_temps_of("ns", "k", Duration::ZERO)
            .unwrap(),
        0
    );
    a.fence().unwrap();
    assert_eq!(leases(), 0, "the lease ends at the fence");
    a.retire().unwrap();
}

#[test]
fn removing_a_keys_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::new(tmp.path()).with_generations(3);
    for p in ["a", "b", "c"] {
        commit(&store, "k", p);
    }
    commit(&store, "k2", "x");
    commit(&store, "k2", "y");
    assert_eq!(store.remove_generations("ns", "k").unwrap(), 2);
    assert!(gens(&store, "k").is_empty());
    assert_eq!(gens(&store, "k2"), ["x"], "another key's stay");
}
