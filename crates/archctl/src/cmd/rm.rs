//! `archctl rm NS/KEY...`: checks every image first, then removes them,
//! each with its older generations.

use arch_image::ImageStore;

use crate::error::{Error, Result};
use crate::parse::ImageId;
use crate::store::{is_claimed, remove_entry};
use crate::tags;

pub fn run(store: &ImageStore, ids: &[ImageId]) -> Result<i32> {
    for id in ids {
        super::require_image(store, id)?;
        if is_claimed(store, &id.namespace, &id.key) {
            return Err(Error::Refused(format!(
                "{id} is claimed by a restore in progress ({}/{}@claim); nothing removed",
                id.namespace, id.key
            )));
        }
    }
    for id in ids {
        remove_entry(&store.root().join(&id.namespace), &id.key)?;
        // The key's older generations are its images too.
        let gens = store.remove_generations(&id.namespace, &id.key)?;
        if gens > 0 {
            println!("removed {gens} older generations of {id}");
        }
        tags::update(store.root(), |t| (t.forget(&id.to_string()), ()))?;
        println!("removed {id}");
    }
    Ok(0)
}
