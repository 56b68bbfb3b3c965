//! Wraps the messages the shim hands to containerd in a protobuf `Any`,
//! with their type URLs written out.
//!
//! Why not `convert_to_any` or `RemotePublisher::publish`: they ask the
//! message for its descriptor, and protobuf then builds its reflection
//! tables for the message's file and every file it imports
//! (`descriptor.proto` among them). That is about 600 KiB of heap, taken at
//! the first event and held by every shim for its whole life: more than
//! the rest of an idle shim's heap together.

use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM,
    TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;

/// A message the shim sends inside an `Any`, with its full protobuf name.
pub trait Packable: Message {
    const TYPE_URL: &'static str;
}

macro_rules! packable {
    ($package:literal: $($message:ident),+ $(,)?) => {
        $(impl Packable for $message {
            const TYPE_URL: &'static str = concat!($package, ".", stringify!($message));
        })+
    };
}

packable!("containerd.events":
    TaskCreate, TaskStart, TaskDelete, TaskExit, TaskOOM, TaskExecAdded, TaskExecStarted,
    TaskPaused, TaskResumed, TaskCheckpointed,
);
packable!("io.containerd.cgroups.v1": Metrics);

pub fn pack<M: Packable>(message: &M) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    Ok(Any {
        type_url: M::TYPE_URL.to_string(),
        value: message.write_to_bytes()?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::MessageFull;

    use super::*;

    fn named_as_its_descriptor<M: Packable + MessageFull>() {
        assert_eq!(M::TYPE_URL, M::descriptor().full_name());
    }

    #[test]
    fn every_written_out_type_url_is_the_full_protobuf_name() {
        named_as_its_descriptor::<TaskCreate>();
        named_as_its_descriptor::<TaskStart>();
        named_as_its_descriptor::<TaskDelete>();
        named_as_its_descriptor::<TaskExit>();
        named_as_its_descriptor::<TaskOOM>();
        named_as_its_descriptor::<TaskExecAdded>();
        named_as_its_descriptor::<TaskExecStarted>();
        named_as_its_descriptor::<TaskPaused>();
        named_as_its_descriptor::<TaskResumed>();
        named_as_its_descriptor::<TaskCheckpointed>();
        named_as_its_descriptor::<Metrics>();
    }

    #[test]
    fn pack_keeps_the_encoded_message() {
        let exit = TaskExit {
            id: "c1".into(),
            exit_status: 137,
            ..Default::default()
        };
        let any = pack(&exit).unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        assert_eq!(TaskExit::parse_from_bytes(&any.value).unwrap(), exit);
    }
}
