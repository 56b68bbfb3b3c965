//! `archctl rm NS/KEY...`: checks every image first, then removes them,
//! each with its older generations.

use arch_image::ImageStore;

use crate::error::{Error, Result};
use crate::parse::ImageId;
use crate::store::{is_claimed, remove_entry};
use crate::tags;

pub fn run(store: &ImageStore, ids: &[ImageId]) -> Result<i32> {
    for id in ids {
        // A key whose older generations are all that is left is removable.
        let has_generations = !store.generations(&id.namespace, &id.key)?.is_empty();
        if !has_generations {
            super::require_image(store, id)?;
        }
        if is_claimed(store, &id.namespace, &id.key) {
            return Err(Error::Refused(format!(
                "{id} is claimed by a restore in progress ({}/{}@claim); nothing removed",
                id.namespace, id.key
            )));
        }
    }
    for id in ids {
        let ns_dir = store.root().join(&id.namespace);
        if store.image_dir(&id.namespace, &id.key)?.is_dir() {
            remove_entry(&ns_dir, &id.key)?;
        }
        // The key's older generations are its images too; each is removed
        // as an image is (renamed aside first).
        let gens = store.generations(&id.namespace, &id.key)?;
        for g in &gens {
            remove_entry(&ns_dir, &g.name)?;
        }
        if !gens.is_empty() {
            println!("removed {} older generations of {id}", gens.len());
        }
        tags::update(store.root(), |t| (t.forget(&id.to_string()), ()))?;
        println!("removed {id}");
    }
    Ok(0)
}
