//! Publishes task events to containerd from one thread, in order, so an RPC
//! never blocks on containerd's event service.

use std::sync::mpsc::{channel, Sender};

use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

pub struct Event {
    pub topic: &'static str,
    pub message: Box<dyn MessageDyn>,
}

#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
}

impl EventSender {
    pub fn spawn(publisher: RemotePublisher, namespace: String) -> Self {
        let (tx, rx) = channel::<Event>();
        std::thread::spawn(move || {
            for ev in rx {
                if let Err(e) = publisher.publish(Context::default(), ev.topic, &namespace, ev.message) {
                    log::warn!("publish {}: {e}", ev.topic);
                }
            }
        });
        Self { tx }
    }

    pub fn send(&self, topic: &'static str, message: impl MessageDyn + 'static) {
        let _ = self.tx.send(Event { topic, message: Box::new(message) });
    }
}
