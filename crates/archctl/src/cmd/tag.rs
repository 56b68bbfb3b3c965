//! `archctl tag|untag NS/KEY TAG`.

use arch_image::ImageStore;

use crate::error::{Error, Result};
use crate::parse::ImageId;
use crate::tags;

pub fn tag(store: &ImageStore, id: &ImageId, tag: &str) -> Result<i32> {
    super::require_image(store, id)?;
    let added = tags::update(store.root(), |t| {
        let c = t.add(&id.to_string(), tag);
        (c, c)
    })?;
    println!(
        "{id}: {} {tag}",
        if added { "tagged" } else { "already tagged" }
    );
    Ok(0)
}

pub fn untag(store: &ImageStore, id: &ImageId, tag: &str) -> Result<i32> {
    let removed = tags::update(store.root(), |t| {
        let c = t.remove(&id.to_string(), tag);
        (c, c)
    })?;
    if !removed {
        return Err(Error::Invalid(format!("{id} has no tag {tag:?}")));
    }
    println!("{id}: untagged {tag}");
    Ok(0)
}
