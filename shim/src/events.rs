//! Publishes task events to containerd from one thread, in order, so an RPC
//! never blocks on containerd's event service.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::SystemTime;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::{Client, EventsClient};

use crate::seams::EventSink;
use crate::service::timestamp;

pub enum Event {
    Publish(Box<Envelope>),
    /// Answered once every event queued before it has been published.
    Flush(Sender<()>),
}

#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    namespace: String,
}

impl EventSender {
    /// `address` is containerd's ttrpc address. It is dialled here, and
    /// again when a publish fails: after a containerd restart the old
    /// connection is dead.
    pub fn spawn(address: String, namespace: String) -> Self {
        let (tx, rx) = channel::<Event>();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || publish_all(rx, &address));
        if let Err(e) = spawned {
            log::error!("cannot start the event publisher: {e}; events are dropped");
        }
        Self { tx, namespace }
    }
}

fn publish_all(rx: Receiver<Event>, address: &str) {
    let mut client = dial(address);
    for ev in rx {
        match ev {
            Event::Publish(envelope) => {
                let req = ForwardRequest {
                    envelope: Some(*envelope).into(),
                    ..Default::default()
                };
                if forward(client.as_ref(), &req) {
                    continue;
                }
                client = dial(address);
                if !forward(client.as_ref(), &req) {
                    log::warn!("publish {}: containerd unreachable", req.envelope.topic);
                }
            }
            Event::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn dial(address: &str) -> Option<EventsClient> {
    match containerd_shim::util::connect(address).map(Client::new) {
        Ok(Ok(client)) => Some(EventsClient::new(client)),
        Ok(Err(e)) => {
            log::warn!("events client on {address}: {e}");
            None
        }
        Err(e) => {
            log::warn!("cannot reach containerd at {address}: {e}");
            None
        }
    }
}

fn forward(client: Option<&EventsClient>, req: &ForwardRequest) -> bool {
    client.is_some_and(|c| c.forward(Context::default(), req).is_ok())
}

impl EventSink for EventSender {
    /// Stamped when queued: the time the event happened, not the time the
    /// queue reached it.
    fn publish(&self, topic: &'static str, event: Any) {
        let envelope = Envelope {
            timestamp: Some(timestamp(SystemTime::now())).into(),
            namespace: self.namespace.clone(),
            topic: topic.to_string(),
            event: Some(event).into(),
            ..Default::default()
        };
        let _ = self.tx.send(Event::Publish(Box::new(envelope)));
    }

    /// The shim must not exit with a TaskDelete still in its queue.
    fn flush(&self, limit: std::time::Duration) {
        let (done, wait) = channel();
        if self.tx.send(Event::Flush(done)).is_ok() && wait.recv_timeout(limit).is_err() {
            log::warn!("events not flushed within {limit:?}");
        }
    }
}
