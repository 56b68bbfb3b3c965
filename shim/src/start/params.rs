//! What containerd passed to `start`, in either protocol:
//! - containerd 2.3+: a `BootstrapParams` message on stdin (socket dir,
//!   log level, containerd's version, the runtime options as an extension);
//! - containerd 1.7 to 2.2: flags and environment, and the runtime options
//!   (a protobuf `Any`) on stdin, if there are any.

use containerd_shim::bootstrap::BootstrapParams;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::{Flags, StartOpts};

use super::StartError;

/// How containerd started the shim, which decides the reply's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// BootstrapParams in, BootstrapResult out (containerd 2.3+).
    Bootstrap,
    /// Flags and environment in; a JSON reply out (containerd 1.7 to 2.2).
    Legacy,
}

/// The legacy protocol's environment (containerd sets both).
#[derive(Debug, Default, Clone)]
pub struct LegacyEnv {
    pub ttrpc_address: String,
    pub grpc_address: String,
}

impl LegacyEnv {
    pub fn from_process() -> Self {
        LegacyEnv {
            ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
            grpc_address: std::env::var("GRPC_ADDRESS").unwrap_or_default(),
        }
    }
}

/// A decoded `start` request.
#[derive(Debug)]
pub struct StartRequest {
    pub protocol: Protocol,
    pub opts: StartOpts,
    /// The runtime options, if containerd sent any.
    pub options: Option<Any>,
}

pub fn decode(input: &[u8], flags: &Flags, env: &LegacyEnv) -> Result<StartRequest, StartError> {
    if let Some(params) = bootstrap_params(input, flags)? {
        let mut opts = StartOpts::from(params);
        if flags.debug {
            opts.debug = true;
        }
        if opts.ttrpc_address.is_empty() {
            return Err(StartError::Params(
                "BootstrapParams carry no containerd TTRPC address".into(),
            ));
        }
        let mut options = opts.extensions.iter();
        let first = options.next().cloned();
        if options.next().is_some() {
            return Err(StartError::Params(format!(
                "BootstrapParams carry {} extensions; ARCH knows only the runtime options",
                opts.extensions.len()
            )));
        }
        return Ok(StartRequest {
            protocol: Protocol::Bootstrap,
            opts,
            options: first,
        });
    }
    if env.ttrpc_address.is_empty() {
        return Err(StartError::Params(
            "TTRPC_ADDRESS is not set (containerd sets it)".into(),
        ));
    }
    let address = if flags.address.is_empty() {
        env.grpc_address.clone()
    } else {
        flags.address.clone()
    };
    let options = match Any::parse_from_bytes(input) {
        Ok(any) if !any.type_url.is_empty() => Some(any),
        _ if input.is_empty() => None,
        _ => {
            return Err(StartError::Params(format!(
                "{} bytes on stdin are neither BootstrapParams nor runtime options",
                input.len()
            )))
        }
    };
    Ok(StartRequest {
        protocol: Protocol::Legacy,
        opts: StartOpts {
            id: flags.id.clone(),
            namespace: flags.namespace.clone(),
            address,
            ttrpc_address: env.ttrpc_address.clone(),
            publish_binary: flags.publish_binary.clone(),
            debug: flags.debug,
            ..Default::default()
        },
        options,
    })
}

/// The BootstrapParams on stdin, or None for the legacy protocol. A
/// runtime options `Any` also decodes as BootstrapParams (its type URL
/// lands in field 1, its value in field 2): only a message naming this
/// instance and namespace is taken as BootstrapParams.
fn bootstrap_params(input: &[u8], flags: &Flags) -> Result<Option<BootstrapParams>, StartError> {
    if input.is_empty() {
        return Ok(None);
    }
    let Ok(params) = BootstrapParams::parse_from_bytes(input) else {
        return Ok(None);
    };
    if params.instance_id == flags.id && params.namespace == flags.namespace {
        return Ok(Some(params));
    }
    let looks_like_any = params.log_level.value() == 0
        && params.containerd_version.is_empty()
        && params.containerd_ttrpc_address.is_empty()
        && params.containerd_grpc_address.is_empty()
        && params.containerd_binary.is_empty()
        && params.extensions.is_empty()
        && params.socket_dir.is_none();
    if looks_like_any {
        return Ok(None);
    }
    Err(StartError::Params(format!(
        "BootstrapParams are for {}/{}, the flags say {}/{}",
        params.namespace, params.instance_id, flags.namespace, flags.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::bootstrap::{Extension, LogLevel};
    use containerd_shim::protos::protobuf::EnumOrUnknown;
    use containerd_shim::protos::shim::oci::Options;

    fn flags() -> Flags {
        Flags {
            id: "c1".into(),
            namespace: "ns".into(),
            address: "/run/c/containerd.sock".into(),
            publish_binary: "/usr/bin/containerd".into(),
            ..Default::default()
        }
    }

    fn env() -> LegacyEnv {
        LegacyEnv {
            ttrpc_address: "/run/c/containerd.sock.ttrpc".into(),
            grpc_address: "/run/c/containerd.sock".into(),
        }
    }

    fn runc_any(o: &Options) -> Any {
        Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    fn params() -> BootstrapParams {
        BootstrapParams {
            instance_id: "c1".into(),
            namespace: "ns".into(),
            log_level: EnumOrUnknown::new(LogLevel::LOG_LEVEL_INFO),
            containerd_version: "v2.4.2".into(),
            containerd_ttrpc_address: "/run/c/containerd.sock.ttrpc".into(),
            containerd_grpc_address: "/run/c/containerd.sock".into(),
            containerd_binary: "/usr/local/bin/containerd".into(),
            socket_dir: Some("/run/c/s".into()),
            ..Default::default()
        }
    }

    #[test]
    fn bootstrap_params_with_options() {
        let mut p = params();
        let o = Options {
            shim_cgroup: "/shims".into(),
            ..Default::default()
        };
        p.extensions.push(Extension {
            value: Some(runc_any(&o)).into(),
            ..Default::default()
        });
        let req = decode(&p.write_to_bytes().unwrap(), &flags(), &env()).unwrap();
        assert_eq!(req.protocol, Protocol::Bootstrap);
        assert_eq!(req.opts.socket_dir.as_deref(), Some("/run/c/s"));
        assert_eq!(req.opts.containerd_version, "v2.4.2");
        assert_eq!(req.opts.ttrpc_address, "/run/c/containerd.sock.ttrpc");
        assert!(!req.opts.debug);
        assert_eq!(req.options.unwrap().type_url, "containerd.runc.v1.Options");
    }

    #[test]
    fn bootstrap_params_for_another_instance_refused() {
        let mut p = params();
        p.instance_id = "other".into();
        let err = decode(&p.write_to_bytes().unwrap(), &flags(), &env()).unwrap_err();
        assert!(err.to_string().contains("ns/other"), "{err}");
    }

    #[test]
    fn bootstrap_params_without_ttrpc_address_refused() {
        let mut p = params();
        p.containerd_ttrpc_address.clear();
        assert!(decode(&p.write_to_bytes().unwrap(), &flags(), &env()).is_err());
    }

    #[test]
    fn legacy_without_options() {
        let req = decode(&[], &flags(), &env()).unwrap();
        assert_eq!(req.protocol, Protocol::Legacy);
        assert_eq!(req.opts.address, "/run/c/containerd.sock");
        assert_eq!(req.opts.ttrpc_address, "/run/c/containerd.sock.ttrpc");
        assert_eq!(req.opts.publish_binary, "/usr/bin/containerd");
        assert!(req.opts.socket_dir.is_none());
        assert!(req.options.is_none());
        let err = decode(&[], &flags(), &LegacyEnv::default()).unwrap_err();
        assert!(err.to_string().contains("TTRPC_ADDRESS"), "{err}");
    }

    #[test]
    fn legacy_options_on_stdin() {
        let o = Options {
            io_uid: 1000,
            ..Default::default()
        };
        let input = runc_any(&o).write_to_bytes().unwrap();
        let req = decode(&input, &flags(), &env()).unwrap();
        assert_eq!(req.protocol, Protocol::Legacy);
        assert_eq!(req.options.unwrap().value, o.write_to_bytes().unwrap());
        // Default options are a bare type URL: still legacy, not bootstrap.
        let input = runc_any(&Options::default()).write_to_bytes().unwrap();
        let req = decode(&input, &flags(), &env()).unwrap();
        assert_eq!(req.protocol, Protocol::Legacy);
        assert!(req.options.is_some());
    }

    #[test]
    fn garbage_on_stdin_refused() {
        let err = decode(&[0xff, 0xfe, 0x01], &flags(), &env()).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }
}
