//! The reply to `start`: where the shim listens and which task API it
//! speaks there, in the form the protocol asks for.

use containerd_shim::bootstrap::BootstrapResult;
use containerd_shim::protos::protobuf::Message;

use super::api_version::TASK_API_V2;
use super::params::Protocol;

pub fn encode(protocol: Protocol, version: i32, address: &str) -> Vec<u8> {
    match protocol {
        Protocol::Bootstrap => BootstrapResult {
            version,
            address: address.to_string(),
            protocol: "ttrpc".into(),
            ..Default::default()
        }
        .write_to_bytes()
        .expect("a BootstrapResult always encodes"),
        // containerd 1.7 takes a bare address as a v2 ttrpc shim.
        Protocol::Legacy if version <= TASK_API_V2 => address.as_bytes().to_vec(),
        Protocol::Legacy => serde_json::json!({
            "version": version,
            "address": address,
            "protocol": "ttrpc",
        })
        .to_string()
        .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_result() {
        let out = encode(Protocol::Bootstrap, 3, "unix:///run/c/s/abc");
        let r = BootstrapResult::parse_from_bytes(&out).unwrap();
        assert_eq!(r.version, 3);
        assert_eq!(r.address, "unix:///run/c/s/abc");
        assert_eq!(r.protocol, "ttrpc");
    }

    #[test]
    fn legacy_forms() {
        assert_eq!(
            encode(Protocol::Legacy, 2, "unix:///s/a"),
            b"unix:///s/a".to_vec()
        );
        let v: serde_json::Value =
            serde_json::from_slice(&encode(Protocol::Legacy, 3, "unix:///s/a")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version": 3, "address": "unix:///s/a", "protocol": "ttrpc"})
        );
    }
}
