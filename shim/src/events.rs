//! Publishes task events to containerd from one thread, in order, so an RPC
//! never blocks on containerd's event service.

use std::sync::mpsc::{channel, Sender};

use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

use crate::seams::EventSink;

pub enum Event {
    Publish {
        topic: &'static str,
        message: Box<dyn MessageDyn>,
    },
    /// Answered once every event queued before it has been published.
    Flush(Sender<()>),
}

#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
}

impl EventSender {
    /// `address` is containerd's ttrpc address: after a containerd restart
    /// the old connection is dead, and the publisher dials again.
    pub fn spawn(publisher: RemotePublisher, namespace: String, address: Option<String>) -> Self {
        let (tx, rx) = channel::<Event>();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let mut publisher = publisher;
                for ev in rx {
                    match ev {
                        Event::Publish { topic, message } => {
                            let retry = message.clone_box();
                            if publisher
                                .publish(Context::default(), topic, &namespace, message)
                                .is_ok()
                            {
                                continue;
                            }
                            let reconnected = address
                                .as_deref()
                                .and_then(|a| RemotePublisher::new(a).ok());
                            let Some(fresh) = reconnected else {
                                log::warn!("publish {topic}: containerd unreachable");
                                continue;
                            };
                            publisher = fresh;
                            if let Err(e) =
                                publisher.publish(Context::default(), topic, &namespace, retry)
                            {
                                log::warn!("publish {topic} after reconnecting: {e}");
                            }
                        }
                        Event::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the event publisher: {e}; events are dropped");
        }
        Self { tx }
    }
}

impl EventSink for EventSender {
    fn publish(&self, topic: &'static str, message: Box<dyn MessageDyn>) {
        let _ = self.tx.send(Event::Publish { topic, message });
    }

    /// The shim must not exit with a TaskDelete still in its queue.
    fn flush(&self, limit: std::time::Duration) {
        let (done, wait) = channel();
        if self.tx.send(Event::Flush(done)).is_ok() && wait.recv_timeout(limit).is_err() {
            log::warn!("events not flushed within {limit:?}");
        }
    }
}
