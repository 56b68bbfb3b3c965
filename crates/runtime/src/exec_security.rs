//! An exec'd process gets the container's seccomp filter, as under runc.
//!
//! libcontainer 0.7's tenant builder rebuilds the spec's `linux` from only
//! the namespaces, cgroups path, personality and time offsets, so the
//! container's `linux.seccomp` never reaches an exec'd process (`kubectl
//! exec`, `docker exec`, CRI ExecSync ran unfiltered). Everything else runc
//! applies to an exec comes from the process JSON containerd sends (user,
//! capabilities, no_new_privileges, rlimits, AppArmor/SELinux labels), which
//! libcontainer does apply.
//!
//! The filter is installed by our executor, the last code that runs before
//! the payload's execve. Like runc, without no_new_privileges it is installed
//! while the process still holds CAP_SYS_ADMIN (the kernel requires one or
//! the other), then the capabilities drop to the process's own; with
//! no_new_privileges it is installed after the drop. For the first case the
//! process JSON handed to libcontainer keeps CAP_SYS_ADMIN and CAP_SETPCAP
//! (to lower the bounding set) until our executor drops them.

use libcontainer::capabilities::drop_privileges;
use libcontainer::oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, Spec};
use libcontainer::syscall::syscall::create_syscall;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, RuntimeError};

/// Capabilities the process holds past libcontainer's drop, so our executor
/// can install the filter and then lower the bounding set.
const HELD_FOR_SECCOMP: [&str; 2] = ["CAP_SYS_ADMIN", "CAP_SETPCAP"];
const HELD_IN_SETS: [&str; 3] = ["bounding", "effective", "permitted"];

/// What our executor does before the payload's execve.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecSecurity {
    seccomp: Option<LinuxSeccomp>,
    no_new_privileges: bool,
    /// The process's own capabilities, when libcontainer was given more.
    drop_to: Option<LinuxCapabilities>,
}

impl ExecSecurity {
    /// Plans an exec of `process` (its JSON, capability sets already
    /// explicit) into a container whose config.json is `spec`; edits
    /// `process` where libcontainer must leave capabilities held.
    pub fn plan(spec: &Value, process: &mut Value) -> Result<Self> {
        let seccomp = match spec.pointer("/linux/seccomp") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<LinuxSeccomp>(v.clone())
                    .map_err(|e| RuntimeError::InvalidSpec(format!("linux.seccomp: {e}")))?,
            ),
        };
        let no_new_privileges = process
            .get("noNewPrivileges")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(filter) = seccomp else {
            return Ok(Self::default());
        };
        if libcontainer::seccomp::is_notify(&filter) {
            // The notify fd would have to reach the profile's listener, which
            // only libcontainer's own (init) path does.
            return Err(RuntimeError::InvalidSpec(
                "exec into a container whose seccomp profile notifies a listener (SCMP_ACT_NOTIFY) is not supported".into(),
            ));
        }
        let drop_to = if no_new_privileges {
            None
        } else {
            let own = process.get("capabilities").cloned().unwrap_or(Value::Null);
            let own: LinuxCapabilities = serde_json::from_value(own)
                .map_err(|e| RuntimeError::InvalidSpec(format!("process.capabilities: {e}")))?;
            hold_for_seccomp(process);
            Some(own)
        };
        Ok(Self {
            seccomp: Some(filter),
            no_new_privileges,
            drop_to,
        })
    }

    /// Whether the exec needs our executor at all.
    pub fn is_needed(&self) -> bool {
        self.seccomp.is_some()
    }

    /// Runs in the exec'd process, just before its execve.
    fn apply(&self) -> std::result::Result<(), String> {
        let Some(filter) = &self.seccomp else {
            return Ok(());
        };
        if !self.no_new_privileges {
            install(filter)?;
        }
        if let Some(caps) = &self.drop_to {
            drop_privileges(caps, create_syscall().as_ref())
                .map_err(|e| format!("dropping capabilities after seccomp: {e}"))?;
        }
        if self.no_new_privileges {
            install(filter)?;
        }
        Ok(())
    }
}

fn install(filter: &LinuxSeccomp) -> std::result::Result<(), String> {
    match libcontainer::seccomp::initialize_seccomp(filter) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err("seccomp notify profiles are not supported for exec".into()),
        Err(e) => Err(format!("installing the container's seccomp filter: {e}")),
    }
}

/// Adds the capabilities our executor needs to the sets libcontainer sets.
fn hold_for_seccomp(process: &mut Value) {
    let Some(caps) = process
        .get_mut("capabilities")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for set in HELD_IN_SETS {
        let list = caps.entry(set).or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = list.as_array_mut() {
            for cap in HELD_FOR_SECCOMP {
                if !list.iter().any(|c| c == cap) {
                    list.push(Value::String(cap.into()));
                }
            }
        }
    }
}

/// libcontainer's default executor, after [`ExecSecurity::apply`].
#[derive(Clone)]
pub(crate) struct SecuredExecutor(pub ExecSecurity);

impl Executor for SecuredExecutor {
    fn exec(&self, spec: &Spec) -> std::result::Result<(), ExecutorError> {
        self.0.apply().map_err(ExecutorError::Other)?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> std::result::Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> std::result::Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filtered_spec() -> Value {
        json!({"linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]
        }}})
    }

    fn process(nnp: bool) -> Value {
        json!({
            "args": ["sh"], "noNewPrivileges": nnp,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"], "inheritable": [], "ambient": []}
        })
    }

    #[test]
    fn without_a_filter_nothing_changes() {
        let mut p = process(false);
        let before = p.clone();
        let plan = ExecSecurity::plan(&json!({"linux": {}}), &mut p).unwrap();
        assert!(!plan.is_needed());
        assert_eq!(p, before);
    }

    #[test]
    fn without_no_new_privileges_the_filter_goes_in_before_the_drop() {
        let mut p = process(false);
        let plan = ExecSecurity::plan(&filtered_spec(), &mut p).unwrap();
        assert!(plan.is_needed());
        for set in HELD_IN_SETS {
            let list = p["capabilities"][set].as_array().unwrap();
            for cap in HELD_FOR_SECCOMP.iter().chain(["CAP_KILL"].iter()) {
                assert!(list.iter().any(|c| c == cap), "{set} lacks {cap}");
            }
        }
        assert_eq!(p["capabilities"]["inheritable"], json!([]));
        let own = plan
            .drop_to
            .expect("drops to the process's own capabilities");
        assert_eq!(own.bounding().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn with_no_new_privileges_no_capability_is_held() {
        let mut p = process(true);
        let before = p.clone();
        let plan = ExecSecurity::plan(&filtered_spec(), &mut p).unwrap();
        assert!(plan.is_needed() && plan.no_new_privileges && plan.drop_to.is_none());
        assert_eq!(p, before);
    }

    #[test]
    fn a_notify_profile_is_refused_with_the_reason() {
        let spec = json!({"linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/l.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }}});
        let err = ExecSecurity::plan(&spec, &mut process(false)).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
    }
}
