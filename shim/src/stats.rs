//! libcgroups statistics → containerd's cgroups v1 Metrics message, which
//! `ctr task metrics` and the CRI decode for both cgroup versions' basics.

use arch_runtime::{CgroupStats, MemoryData};
use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};

fn entry(d: &MemoryData) -> MemoryEntry {
    MemoryEntry {
        limit: d.limit,
        usage: d.usage,
        max: d.max_usage,
        failcnt: d.fail_count,
        ..Default::default()
    }
}

pub fn to_metrics(s: &CgroupStats) -> Metrics {
    let stat = |k: &str| s.memory.stats.get(k).copied().unwrap_or(0);
    let mut m = Metrics::new();
    m.pids = Some(PidsStat {
        current: s.pids.current,
        limit: s.pids.limit,
        ..Default::default()
    })
    .into();
    m.cpu = Some(CPUStat {
        usage: Some(CPUUsage {
            total: s.cpu.usage.usage_total,
            kernel: s.cpu.usage.usage_kernel,
            user: s.cpu.usage.usage_user,
            per_cpu: s.cpu.usage.per_core_usage_total.clone(),
            ..Default::default()
        })
        .into(),
        throttling: Some(Throttle {
            periods: s.cpu.throttling.periods,
            throttled_periods: s.cpu.throttling.throttled_periods,
            throttled_time: s.cpu.throttling.throttled_time,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
    .into();
    m.memory = Some(MemoryStat {
        cache: s.memory.cache,
        rss: stat("rss"),
        rss_huge: stat("rss_huge"),
        mapped_file: stat("mapped_file"),
        dirty: stat("dirty"),
        writeback: stat("writeback"),
        pg_fault: stat("pgfault"),
        pg_maj_fault: stat("pgmajfault"),
        inactive_anon: stat("inactive_anon"),
        active_anon: stat("active_anon"),
        inactive_file: stat("inactive_file"),
        active_file: stat("active_file"),
        unevictable: stat("unevictable"),
        total_cache: stat("total_cache"),
        total_rss: stat("total_rss"),
        usage: Some(entry(&s.memory.memory)).into(),
        swap: Some(entry(&s.memory.memswap)).into(),
        kernel: Some(entry(&s.memory.kernel)).into(),
        kernel_tcp: Some(entry(&s.memory.kernel_tcp)).into(),
        ..Default::default()
    })
    .into();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_cpu_memory_and_pids() {
        let mut s = CgroupStats::default();
        s.cpu.usage.usage_total = 42;
        s.memory.memory.usage = 4096;
        s.memory.memory.limit = 1 << 30;
        s.memory.stats.insert("rss".into(), 7);
        s.pids.current = 3;
        let m = to_metrics(&s);
        assert_eq!(m.cpu.usage.total, 42);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 1 << 30);
        assert_eq!(m.memory.rss, 7);
        assert_eq!(m.pids.current, 3);
    }
}
