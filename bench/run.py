#!/usr/bin/env python3
"""ARCH vs runc-v2 benchmark (Python 3 stdlib only).

Compares the runtimes io.containerd.arch.v1 and io.containerd.runc.v2 on the
SAME containerd instance, interleaved: every sample of every figure is taken
for both runtimes back to back, and the order (ARCH first / runc first)
alternates from sample to sample.

    python3 bench/run.py --out results/bench
    python3 bench/run.py --address /run/arch-bench/containerd.sock \
        --namespace arch-bench --rounds 5 --out /tmp/bench
    python3 bench/run.py --quick --out /tmp/bench-quick

Needs root, `ctr` on PATH, a running containerd that can find both shims and
has the test image (see hack/containerd-test.sh). Writes OUT/results.json and
OUT/chart.svg and prints a table. Every container it creates is removed again
(also on Ctrl-C / SIGTERM / errors).

Adding a figure = writing one function decorated with @figure(...): it gets
(ctx, runtime) and returns {metric_key: number} for ONE sample of ONE runtime;
the runner does the interleaving, the statistics, the table and the chart.
"""

import argparse
import tempfile
import concurrent.futures
import datetime
import glob
import hashlib
import json
import os
import platform
import signal
import statistics
import shutil
import subprocess
import sys
import threading
import time
from xml.sax.saxutils import escape

RUNTIMES = {
    # key: (containerd runtime name, shim binary basename, label)
    "arch": ("io.containerd.arch.v1", "containerd-shim-arch-v1", "ARCH"),
    "runc": ("io.containerd.runc.v2", "containerd-shim-runc-v2", "runc-v2"),
}
DEFAULT_IMAGE = os.environ.get("ARCH_TEST_IMAGE", "localhost/arch-test/busybox:latest")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NotImplementedFigure(Exception):
    """Raised by a figure whose measurement does not exist yet."""


# --------------------------------------------------------------------------
# figure / metric registry

FIGURES = []  # list of dicts, in run order
METRICS = {}  # key -> metadata


def metric(key, label, unit, target=None, chart=True, digits=1, abs_target=None):
    """Declares a reported metric. target = max ARCH/runc ratio (lower is better).

    abs_target = (">=" or "<=", value): a target on ARCH's own median (e.g. a
    throughput); such metrics are usually chart=False (the chart is "lower is
    better, normalised to runc").
    """
    METRICS[key] = dict(key=key, label=label, unit=unit, target=target, chart=chart,
                        digits=digits, abs_target=abs_target)


def figure(name, samples=lambda ctx: 1, metrics=(), runtimes=("arch", "runc"),
           rounds="all", enabled=lambda ctx: True):
    """Registers fn(ctx, runtime_key) -> {metric_key: value} as a figure.

    samples(ctx) = how many samples per runtime per round; runtimes = which
    runtimes it measures; rounds = "all" or "last" (run once, in the last
    round); enabled(ctx) = False skips the figure (e.g. with --quick).
    A figure may leave a metric out of its result (e.g. a failed restore has
    no restore latency); failures are recorded with ctx.fail().
    """
    def deco(fn):
        FIGURES.append(dict(name=name, fn=fn, samples=samples, metrics=list(metrics),
                            runtimes=tuple(runtimes), rounds=rounds, enabled=enabled))
        return fn
    return deco


# --------------------------------------------------------------------------
# ctr helpers


class Ctx:
    def __init__(self, args):
        self.args = args
        self.address = args.address
        self.namespace = args.namespace
        self.image = args.image
        self.run_id = "%x" % (int(time.time() * 1000) & 0xFFFFFFFFF)
        self.seq = 0
        self.created = []  # container ids we created (in order)
        self.shim_exe = {}  # runtime -> path of the shim binary seen running
        self.notes = []
        self.ckpt_dir = os.path.join(args.checkpoint_root, args.namespace)  # ARCH images
        self.lock = threading.Lock()
        self.events = None  # EventWatcher, started by main()
        self.failures = []  # [{figure, runtime, what, error}]
        self.extra = {}  # figure -> list of per-sample details (JSON only)

    def new_id(self, rt, tag):
        with self.lock:
            self.seq += 1
            cid = "bench-%s-%s-%s-%d" % (self.run_id, rt, tag, self.seq)
            self.created.append(cid)
        return cid

    def new_key(self):
        """A fresh ARCH_KEY; its images are removed by cleanup_all (prefix)."""
        with self.lock:
            self.seq += 1
            return "bench-%s-k%d" % (self.run_id, self.seq)

    def new_ref(self):
        """A fresh image ref for a runc-v2 checkpoint (removed by cleanup_all)."""
        with self.lock:
            self.seq += 1
            return "bench/%s/ckpt:%d" % (self.run_id, self.seq)

    def fail(self, figure, rt, what, err):
        with self.lock:
            self.failures.append(dict(figure=figure, runtime=rt, what=what, error=str(err)[:600]))
        print("bench: %s %s %s FAILED: %s" % (figure, rt, what, str(err)[:300]), file=sys.stderr)

    def add_extra(self, figure, rec):
        with self.lock:
            self.extra.setdefault(figure, []).append(rec)

    def key_dirs(self, key):
        """Every image dir of key: the image and its `key@...` sidecars."""
        try:
            names = os.listdir(self.ckpt_dir)
        except OSError:
            return []
        return [os.path.join(self.ckpt_dir, n) for n in names
                if n == key or n.startswith(key + "@")]

    def remove_arch_images(self, key_or_prefix):
        """rm -r every image dir whose name starts with key_or_prefix."""
        try:
            names = os.listdir(self.ckpt_dir)
        except OSError:
            return
        for n in names:
            if n.startswith(key_or_prefix):
                shutil.rmtree(os.path.join(self.ckpt_dir, n), ignore_errors=True)

    def remove_refs(self, refs):
        refs = list(refs)
        for i in range(0, len(refs), 20):
            self.ctr("image", "rm", "--sync", *refs[i:i + 20], check=False)

    def ctr(self, *argv, check=True, timeout=120):
        cmd = [self.args.ctr, "--address", self.address, "-n", self.namespace] + list(argv)
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, text=True)
        if check and p.returncode != 0:
            raise RuntimeError("%s -> rc %d: %s%s" % (" ".join(cmd), p.returncode,
                                                       p.stdout.strip(), p.stderr.strip()))
        return p

    def timed_ctr(self, *argv):
        t0 = time.perf_counter()
        p = self.ctr(*argv, check=False)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError("ctr %s -> rc %d: %s" % (" ".join(argv), p.returncode,
                                                       (p.stdout + p.stderr).strip()))
        return dt

    def run_detached(self, rt, cid, *cmd):
        """`ctr run -d` (returns after Task.Start); returns its wall time in s."""
        return self.timed_ctr("run", "-d", "--runtime", RUNTIMES[rt][0], self.image, cid, *cmd)

    def task_status(self):
        out = self.ctr("task", "ls").stdout.splitlines()[1:]
        res = {}
        for line in out:
            f = line.split()
            if len(f) >= 3:
                res[f[0]] = f[2]
        return res

    def remove(self, ids):
        """Kill + delete tasks and containers; errors for missing ids ignored."""
        ids = list(ids)
        if not ids:
            return
        tasks = set(self.task_status())
        for cid in ids:
            if cid in tasks:
                self.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, check=False)
        for cid in ids:
            if cid in tasks:
                for _ in range(20):
                    if self.ctr("task", "delete", "-f", cid, check=False).returncode == 0:
                        break
                    if cid not in self.task_status():
                        break
                    time.sleep(0.1)
        existing = set(self.ctr("container", "ls", "-q").stdout.split())
        left = [c for c in ids if c in existing]
        for i in range(0, len(left), 20):
            self.ctr("container", "delete", *left[i:i + 20], check=False)

    def cleanup_all(self):
        """Removes every container of this run (ours by id prefix)."""
        prefix = "bench-%s-" % self.run_id
        try:
            existing = [c for c in self.ctr("container", "ls", "-q").stdout.split()
                        if c.startswith(prefix)]
        except Exception as e:  # containerd gone: nothing we can do via ctr
            print("cleanup: cannot list containers: %s" % e, file=sys.stderr)
            return
        if existing:
            self.remove_parallel(existing)
        self.remove_arch_images("bench-%s-" % self.run_id)
        try:
            refs = [r for r in self.ctr("image", "ls", "-q").stdout.split()
                    if r.startswith("bench/%s/" % self.run_id)]
            self.remove_refs(refs)
        except Exception as e:
            print("cleanup: cannot remove checkpoint refs: %s" % e, file=sys.stderr)

    def remove_parallel(self, ids, workers=16):
        """remove() for many ids, `workers` ctr pipelines at a time."""
        ids = list(ids)
        chunks = [ids[i::workers] for i in range(workers) if ids[i::workers]]
        if len(chunks) <= 1:
            return self.remove(ids)
        with concurrent.futures.ThreadPoolExecutor(len(chunks)) as pool:
            list(pool.map(self.remove, chunks))

    def task_pids(self):
        out = self.ctr("task", "ls").stdout.splitlines()[1:]
        return {f[0]: int(f[1]) for f in (l.split() for l in out) if len(f) >= 3 and f[1].isdigit()}


class EventWatcher:
    """One long-lived `ctr events`; records when each init process's
    /tasks/exit event arrives (perf_counter) and its exit status."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.exits = {}  # container id -> (perf_counter, exit_status)
        self.cond = threading.Condition()
        self.p = subprocess.Popen([ctx.args.ctr, "--address", ctx.address, "events"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        time.sleep(0.5)  # let the subscription reach containerd

    def _read(self):
        for line in self.p.stdout:
            now = time.perf_counter()
            f = line.split(" ", 6)
            if len(f) < 7 or f[4] != self.ctx.namespace or f[5] != "/tasks/exit":
                continue
            try:
                j = json.loads(f[6])
            except ValueError:
                continue
            if j.get("id") != j.get("container_id"):
                continue  # an exec'd process
            with self.cond:
                self.exits[j["container_id"]] = (now, j.get("exit_status", 0))
                self.cond.notify_all()

    def wait(self, cids, timeout):
        """Waits for the exit events of all cids; returns {cid: (t, status)}
        for those seen. Falls back to polling `ctr task ls` every 2 s (an
        exit seen only that way is timed at the poll, status None)."""
        cids = set(cids)
        deadline = time.perf_counter() + timeout
        next_poll = time.perf_counter() + 2
        while True:
            with self.cond:
                missing = cids - set(self.exits)
                if not missing or time.perf_counter() >= deadline:
                    return {c: self.exits[c] for c in cids if c in self.exits}
                self.cond.wait(min(0.2, max(0.0, deadline - time.perf_counter())))
            if time.perf_counter() >= next_poll:
                next_poll = time.perf_counter() + 2
                try:
                    st = self.ctx.task_status()
                except Exception:
                    continue
                now = time.perf_counter()
                with self.cond:
                    for c in missing:
                        if c not in self.exits and st.get(c, "STOPPED") == "STOPPED":
                            self.exits[c] = (now, None)
                            self.ctx.notes.append("exit of %s seen by polling, not by event" % c)

    def close(self):
        try:
            self.p.kill()
            self.p.wait(5)
        except Exception:
            pass


# --------------------------------------------------------------------------
# /proc helpers


def read_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def shim_pids(ctx, rt, ids):
    """Pids of the shim processes (incl. ARCH's zygote, same argv) of `ids`."""
    binary = RUNTIMES[rt][1]
    ids = set(ids)
    res = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        argv = read_cmdline(int(d))
        if not argv or os.path.basename(argv[0]) != binary:
            continue
        try:
            cid = argv[argv.index("-id") + 1]
            addr = argv[argv.index("-address") + 1]
        except (ValueError, IndexError):
            continue
        if cid in ids and addr == ctx.address:
            res[int(d)] = cid
    return res


def mem_of(pid):
    """kB figures from smaps_rollup + thread count from status."""
    m = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if v and v[0].isdigit():
                m[k] = int(v[0])
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                m["Threads"] = int(line.split()[1])
    m["Private"] = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
    m["Shared"] = m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0)
    return m


# --------------------------------------------------------------------------
# figures

metric("mem_pss", "shim PSS / idle container", "KiB", target=0.3, digits=0)
metric("mem_rss", "shim RSS / idle container", "KiB", target=0.5, digits=0)
metric("mem_private", "shim Private (USS) / container", "KiB", digits=0)
metric("mem_shared", "shim Shared (RSS-USS) / container", "KiB", chart=False, digits=0)
metric("mem_anon", "shim Anonymous / container", "KiB", chart=False, digits=0)
metric("shim_procs", "shim processes / container", "", chart=False, digits=1)
metric("shim_threads", "shim threads / container", "", chart=False, digits=1)


@figure("idle-memory", metrics=["mem_pss", "mem_rss", "mem_private", "mem_shared",
                                "mem_anon", "shim_procs", "shim_threads"])
def fig_idle_memory(ctx, rt):
    """N detached `sleep` containers; sum smaps_rollup of their shims / N."""
    n = ctx.args.containers
    ids = [ctx.new_id(rt, "mem") for _ in range(n)]
    try:
        for cid in ids:
            ctx.run_detached(rt, cid, "sleep", "100000")
        time.sleep(ctx.args.settle)  # let the shims reach their idle state
        st = ctx.task_status()
        bad = [c for c in ids if st.get(c) != "RUNNING"]
        if bad:
            raise RuntimeError("%s: not RUNNING after start: %s" % (rt, bad))
        pids = shim_pids(ctx, rt, ids)
        per = {}
        for cid in pids.values():
            per[cid] = per.get(cid, 0) + 1
        missing = [c for c in ids if c not in per]
        if missing:
            raise RuntimeError("%s: no shim process found for %s" % (rt, missing))
        tot = {}
        for pid in pids:
            if rt not in ctx.shim_exe:
                try:
                    ctx.shim_exe[rt] = os.readlink("/proc/%d/exe" % pid)
                except OSError:
                    pass
            for k, v in mem_of(pid).items():
                tot[k] = tot.get(k, 0) + v
        return {
            "mem_pss": tot["Pss"] / n,
            "mem_rss": tot["Rss"] / n,
            "mem_private": tot["Private"] / n,
            "mem_shared": tot["Shared"] / n,
            "mem_anon": tot.get("Anonymous", 0) / n,
            "shim_procs": len(pids) / n,
            "shim_threads": tot.get("Threads", 0) / n,
        }
    finally:
        ctx.remove(ids)


metric("run_running_ms", "run -d → RUNNING", "ms", target=0.8)


@figure("run-to-running", samples=lambda ctx: ctx.args.iters, metrics=["run_running_ms"])
def fig_run_to_running(ctx, rt):
    """Wall time of `ctr run -d` (create + Task.Start; returns once started)."""
    cid = ctx.new_id(rt, "start")
    try:
        dt = ctx.run_detached(rt, cid, "sleep", "100000")
        st = ctx.task_status().get(cid)
        if st != "RUNNING":
            raise RuntimeError("%s: %s is %s after ctr run -d" % (rt, cid, st))
        return {"run_running_ms": dt * 1000}
    finally:
        ctx.remove([cid])


metric("run_exit_ms", "run --rm true (full lifecycle)", "ms")


@figure("run-to-exit", samples=lambda ctx: ctx.args.iters, metrics=["run_exit_ms"])
def fig_run_to_exit(ctx, rt):
    """Wall time of `ctr run --rm IMAGE id true`: create/start/wait/delete."""
    cid = ctx.new_id(rt, "exit")
    try:
        dt = ctx.timed_ctr("run", "--rm", "--runtime", RUNTIMES[rt][0], ctx.image, cid, "true")
        return {"run_exit_ms": dt * 1000}
    finally:
        ctx.remove([cid])


# ---- checkpoint / restore ------------------------------------------------

ARCH_ENV = lambda key: ["--env", "ARCH_ENABLE=1", "--env", "ARCH_KEY=" + key]


def read_count(pid, tries=20, explain=False):
    """The memtouch counter in the container's /tmp/count, or None (why on
    stderr if `explain`). memtouch rewrites the file every 100 ms
    (truncate, then write): an empty read is retried for up to `tries` ×
    10 ms."""
    say = sys.stderr.write if explain else (lambda _: None)
    for _ in range(tries):
        try:
            with open("/proc/%d/root/tmp/count" % pid) as f:
                text = f.read().strip()
        except OSError as e:
            say("bench: reading the count of pid %d: %s\n" % (pid, e))
            return None
        if text:
            try:
                return int(text)
            except ValueError:
                say("bench: pid %d's count is %r\n" % (pid, text))
                return None
        time.sleep(0.01)
    say("bench: pid %d's count stayed empty\n" % pid)
    return None


def wait_count(ctx, cid, timeout=120):
    """Waits until memtouch in cid has touched its memory (/tmp/count
    exists); returns (host pid, count)."""
    deadline = time.perf_counter() + timeout
    pid = None
    while time.perf_counter() < deadline:
        if pid is None:
            pid = ctx.task_pids().get(cid)
        if pid:
            c = read_count(pid)
            if c is not None:
                return pid, c
        time.sleep(0.02)
    raise RuntimeError("%s: no /tmp/count after %d s" % (cid, timeout))


def read_manifest(ctx, key):
    with open(os.path.join(ctx.ckpt_dir, key, "manifest.json")) as f:
        return json.load(f)


def restore_outcome(ctx, key):
    """'restored' / 'failed' / 'unconsumed' / 'missing' from the image dir names."""
    names = [os.path.basename(d) for d in ctx.key_dirs(key)]
    if key + "@restored" in names:
        return "restored"
    if any(n.startswith(key + "@failed-") for n in names):
        return "failed"
    return "unconsumed" if key in names else "missing"


def runc_checkpoint_bytes(ctx, ref):
    """Sum of the blob sizes the checkpoint index references (criu tar, rw
    diff, config, options; no image layers without --image) + the index."""
    for line in ctx.ctr("image", "ls").stdout.splitlines()[1:]:
        f = line.split()
        if f and f[0] == ref:
            idx = ctx.ctr("content", "get", f[2]).stdout
            j = json.loads(idx)
            blobs = {m["mediaType"]: m.get("size", 0) for m in j.get("manifests", [])}
            return len(idx) + sum(blobs.values()), blobs
    raise RuntimeError("checkpoint image %s not found" % ref)


def cr_sample(ctx, rt, mib, fig, p, fill="byte"):
    """One checkpoint + restore of a container holding `mib` MiB (memtouch,
    its pages filled as `fill` says: byte, random or typical).

    ARCH: `ctr task kill` (SIGTERM) → /tasks/exit event = dump + commit +
    exit; then a new container (new id, same ARCH_KEY) with `ctr run -d`
    = create + CRIU restore in Start.
    runc-v2: `ctr container checkpoint --rw --task` (pause, dump leaving the
    task running, resume, write the tar into the content store); the original
    is then removed (untimed) and `ctr container restore --live --rw` with a
    new id = create from the image + restore in Start.
    """
    cid, cid2 = ctx.new_id(rt, "cr%d" % mib), ctx.new_id(rt, "cr%dr" % mib)
    key = ctx.new_key() if rt == "arch" else None
    ref = ctx.new_ref() if rt == "runc" else None
    res, rec = {}, {"runtime": rt, "mib": mib}
    try:
        extra = ARCH_ENV(key) if rt == "arch" else []
        ctx.ctr("run", "-d", "--runtime", RUNTIMES[rt][0], *extra, ctx.image, cid,
                "memtouch", str(mib), fill)
        pid, _ = wait_count(ctx, cid)
        c0 = read_count(pid)
        rss = mem_of(pid).get("Rss", 0) * 1024
        rec["rss_bytes"] = rss
        # -- checkpoint
        try:
            if rt == "arch":
                t0 = time.perf_counter()
                ctx.ctr("task", "kill", cid)
                ex = ctx.events.wait([cid], timeout=300).get(cid)
                if ex is None:
                    raise RuntimeError("%s not STOPPED 300 s after SIGTERM" % cid)
                dt = ex[0] - t0
                rec["exit_status"] = ex[1]
                m = read_manifest(ctx, key)  # must exist once STOPPED
                if m.get("status") != "committed":
                    raise RuntimeError("manifest status %s" % m.get("status"))
                size = m["total_size"]
                rec["durations_ms"] = m["durations_ms"]
                rec["files"] = len(m.get("files", []))
                rec["criu_bytes"] = sum(x["size"] for x in m["files"]
                                        if x["path"].startswith("criu/"))
                rec["pages_bytes"] = sum(x["size"] for x in m["files"]
                                         if os.path.basename(x["path"]).startswith("pages-"))
            else:
                dt = ctx.timed_ctr("container", "checkpoint", "--rw", "--task", cid, ref)
                size, rec["blobs"] = runc_checkpoint_bytes(ctx, ref)
        except Exception as e:
            ctx.fail(fig, rt, "checkpoint", e)
            return res
        res[p + "ckpt_ms"] = dt * 1000
        res[p + "image_mib"] = size / 2 ** 20
        res[p + "ckpt_gbps"] = size / dt / 1e9
        if rss and p + "rss_gbps" in METRICS:  # only figures that declare them
            res[p + "rss_gbps"] = rss / dt / 1e9
            res[p + "image_rss"] = size / rss
        rec.update(ckpt_ms=dt * 1000, image_bytes=size, count_before=c0)
        ctx.remove([cid])  # untimed (ARCH: already exited; runc: still running)
        # Both restores start from the same memory: this VM reports freed
        # pages to its host (virtio-balloon free page reporting) about 2 s
        # after they are freed, and faulting them back costs 3-5x a warm
        # write. Without the wait runc-v2's restore got the GiB its original
        # freed just now (warm) and ARCH's the one freed before the commit.
        time.sleep(ctx.args.restore_settle)
        # -- restore
        try:
            if rt == "arch":
                dt = ctx.timed_ctr("run", "-d", "--runtime", RUNTIMES[rt][0], *ARCH_ENV(key),
                                   ctx.image, cid2, "memtouch", str(mib), fill)
                outcome = restore_outcome(ctx, key)
                if outcome != "restored":
                    raise RuntimeError("image %s: %s (fresh start instead of restore)"
                                       % (key, outcome))
            else:
                dt = ctx.timed_ctr("container", "restore", "--live", "--rw", cid2, ref)
            pid2 = ctx.task_pids().get(cid2)
            st = ctx.task_status().get(cid2)
            c1 = read_count(pid2, explain=True) if pid2 else None
            rec["count_after"] = c1
            if st != "RUNNING" or c1 is None or c1 < c0:
                raise RuntimeError("restored %s is %s, counter %s (before %s)" % (cid2, st, c1, c0))
        except Exception as e:
            ctx.fail(fig, rt, "restore", e)
            return res
        res[p + "restore_ms"] = dt * 1000
        rec["restore_ms"] = dt * 1000
        return res
    finally:
        ctx.add_extra(fig, rec)
        ctx.remove([cid, cid2])
        if key:
            ctx.remove_arch_images(key)
        if ref:
            ctx.remove_refs([ref])
        remove_restore_leftovers()


def remove_restore_leftovers():
    """containerd 1.7 unpacks a checkpoint it restores (ctr container
    restore, runc-v2) into a ctrd-checkpoint* directory under
    $XDG_RUNTIME_DIR, or /tmp, and never removes it: 1 GiB per 1 GiB
    restore, which filled this machine's disk. bench/run.sh gives the
    bench's containerd a directory of its own; what is there now is done."""
    d = os.environ.get("XDG_RUNTIME_DIR")
    if not d:
        return
    for e in glob.glob(os.path.join(d, "ctrd-checkpoint*")):
        shutil.rmtree(e, ignore_errors=True)


metric("s_ckpt_ms", "checkpoint, small container", "ms", target=0.5)
metric("s_restore_ms", "restore, small container", "ms", target=1.0)
metric("s_image_mib", "checkpoint image size, small", "MiB", digits=2)
metric("s_ckpt_gbps", "checkpoint throughput, small", "GB/s", chart=False, digits=3)


@figure("checkpoint-restore", samples=lambda ctx: ctx.args.cr_iters,
        metrics=["s_ckpt_ms", "s_restore_ms", "s_image_mib", "s_ckpt_gbps"])
def fig_checkpoint_restore(ctx, rt):
    """memtouch SMALL (16 MiB): checkpoint, restore, image size."""
    return cr_sample(ctx, rt, ctx.args.small_mib, "checkpoint-restore", "s_")


def periodic_records(ctx, key):
    """Periodic checkpoint records of `key` (the shims' .records/*.jsonl)."""
    recs = []
    d = os.path.join(ctx.args.checkpoint_root, ".records")
    for name in os.listdir(d) if os.path.isdir(d) else []:
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(d, name)) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("key") == key and r.get("trigger") == "periodic":
                    recs.append(r)
    return recs


def archctl(ctx, *argv):
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release",
                       "archctl")
    t0 = time.perf_counter()
    p = subprocess.run([exe, "--root", ctx.args.checkpoint_root] + list(argv),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("archctl %s -> rc %d: %s" % (" ".join(argv), p.returncode, p.stderr))
    return time.perf_counter() - t0


metric("p_pause_ms", "periodic checkpoint: container frozen (dump + rootfs diff)", "ms", chart=False,
       digits=0)
metric("p_total_ms", "periodic checkpoint: dump + diff + commit", "ms", chart=False, digits=0)
metric("x_export_mbps", "archctl export, image MB/s (zstd 3)", "MB/s", chart=False, digits=0)
metric("x_import_mbps", "archctl import, image MB/s (checked)", "MB/s", chart=False, digits=0)
metric("x_ratio", "archive size / image size", "x", chart=False, digits=2)


@figure("periodic-and-archive", samples=lambda ctx: 1, runtimes=("arch",),
        metrics=["p_pause_ms", "p_total_ms", "x_export_mbps", "x_import_mbps", "x_ratio"])
def fig_periodic_and_archive(ctx, rt):
    """ARCH only: memtouch ARCHIVE_MIB with ARCH_INTERVAL=2s (median pause of
    three periodic checkpoints), then export and import of its image."""
    cid, key = ctx.new_id(rt, "per"), ctx.new_key()
    moved = key + "-moved"
    res = {}
    tmp = tempfile.mkdtemp(prefix="arch-bench-archive-")
    try:
        ctx.ctr("run", "-d", "--runtime", RUNTIMES[rt][0], *ARCH_ENV(key), "--env",
                "ARCH_INTERVAL=2s", ctx.image, cid, "memtouch", str(ctx.args.archive_mib))
        deadline = time.time() + 60
        ok = []
        while time.time() < deadline and len(ok) < 3:
            time.sleep(0.5)
            ok = [r for r in periodic_records(ctx, key) if r.get("outcome") == "ok"]
        if len(ok) < 3:
            raise RuntimeError("%d periodic checkpoints in 60 s" % len(ok))
        # Frozen from the dump through the rootfs diff.
        pauses = sorted(r["durations_ms"].get("dump", 0) + r["durations_ms"].get("rootfs", 0)
                        for r in ok[:3])
        totals = sorted(r["total_ms"] for r in ok[:3])
        res["p_pause_ms"], res["p_total_ms"] = pauses[1], totals[1]
        ctx.remove([cid])
        size = read_manifest(ctx, key)["total_size"]
        out = os.path.join(tmp, "job.tar.zst")
        dt = archctl(ctx, "export", "%s/%s" % (ctx.namespace, key), "-o", out)
        res["x_export_mbps"] = size / dt / 1e6
        res["x_ratio"] = os.path.getsize(out) / size
        dt = archctl(ctx, "import", out, "--key", moved)
        res["x_import_mbps"] = size / dt / 1e6
    except Exception as e:
        ctx.fail("periodic-and-archive", rt, "periodic/archive", e)
    finally:
        ctx.remove([cid])
        ctx.remove_arch_images(key)
        shutil.rmtree(tmp, ignore_errors=True)
    return res


metric("b_ckpt_ms", "checkpoint, 1 GiB random (incompressible)", "ms", target=1.0, digits=0)
metric("b_restore_ms", "restore, 1 GiB random", "ms", target=0.7, digits=0)
metric("b_image_mib", "checkpoint image size, 1 GiB random", "MiB", chart=False, digits=0)
metric("b_ckpt_gbps", "checkpoint throughput, 1 GiB random (image bytes)", "GB/s", chart=False,
       digits=2, abs_target=(">=", 1.5))


@figure("checkpoint-restore-1g", samples=lambda ctx: ctx.args.big_iters,
        metrics=["b_ckpt_ms", "b_restore_ms", "b_image_mib", "b_ckpt_gbps"])
def fig_checkpoint_restore_big(ctx, rt):
    """memtouch BIG (1024 MiB) of random bytes: checkpoint, restore, throughput."""
    return cr_sample(ctx, rt, ctx.args.big_mib, "checkpoint-restore-1g", "b_", fill="random")


metric("t_ckpt_ms", "checkpoint, 1 GiB typical (half zero pages)", "ms", target=1.0, digits=0)
metric("t_restore_ms", "restore, 1 GiB typical", "ms", target=0.7, digits=0)
metric("t_image_rss", "checkpoint image / RSS, 1 GiB typical", "x", chart=False, digits=2,
       abs_target=("<=", 0.6))
metric("t_rss_gbps", "checkpoint throughput, 1 GiB typical (RSS bytes)", "GB/s", chart=False,
       digits=2, abs_target=(">=", 1.5))


@figure("checkpoint-restore-1g-typical", samples=lambda ctx: ctx.args.big_iters,
        metrics=["t_ckpt_ms", "t_restore_ms", "t_image_rss", "t_rss_gbps"])
def fig_checkpoint_restore_typical(ctx, rt):
    """memtouch BIG (1024 MiB), half zero pages and half random ones."""
    res = cr_sample(ctx, rt, ctx.args.big_mib, "checkpoint-restore-1g-typical", "t_",
                    fill="typical")
    return {k: v for k, v in res.items() if k in METRICS}  # the figure's own metrics


# ---- a slow checkpoint root ----------------------------------------------

metric("thr_none_ckpt_ms", "throttled root: checkpoint, no compression", "ms", chart=False,
       digits=0)
metric("thr_zstd_ckpt_ms", "throttled root: checkpoint, zstd", "ms", chart=False, digits=0)
metric("thr_none_restore_ms", "throttled root: restore, no compression", "ms", chart=False,
       digits=0)
metric("thr_zstd_restore_ms", "throttled root: restore, zstd", "ms", chart=False, digits=0)
metric("thr_saved", "throttled root: checkpoint time saved by zstd", "x", chart=False, digits=2)

BLKIO = "/sys/fs/cgroup/blkio"


def must(argv):
    """Runs argv; its stdout, or an exception with its output."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s -> rc %d: %s" % (" ".join(argv), p.returncode, p.stdout))
    return p.stdout


class ThrottledRoot:
    """The checkpoint root on a loop-device ext4 limited to MBPS MB/s each
    way (cgroup v1 blkio throttle of the root group: it applies to every
    process, the kernel's writeback included), mounted over the bench's
    checkpoint root for the figure and taken away after."""

    def __init__(self, ctx, mbps, size_gib):
        self.ctx, self.mbps, self.size_gib = ctx, mbps, size_gib
        self.file = os.path.join(os.path.dirname(ctx.args.checkpoint_root.rstrip("/")),
                                 "throttled-root.img")
        self.dev = self.majmin = None

    def __enter__(self):
        if not os.path.exists(os.path.join(BLKIO, "blkio.throttle.write_bps_device")):
            raise NotImplementedFigure("no cgroup v1 blkio throttle on this host")
        must(["truncate", "-s", "%dG" % self.size_gib, self.file])
        self.dev = must(["losetup", "--find", "--show", self.file]).strip()
        must(["mkfs.ext4", "-q", "-F", self.dev])
        self.majmin = must(["lsblk", "-ndo", "MAJ:MIN", self.dev]).strip()
        os.makedirs(self.ctx.args.checkpoint_root, exist_ok=True)
        must(["mount", self.dev, self.ctx.args.checkpoint_root])
        self._throttle(self.mbps * 1000 * 1000)
        return self

    def _throttle(self, bps):
        for way in ("read", "write"):
            with open(os.path.join(BLKIO, "blkio.throttle.%s_bps_device" % way), "w") as f:
                f.write("%s %d" % (self.majmin, bps))

    def __exit__(self, *exc):
        if self.majmin:
            self._throttle(0)  # 0 removes the rule
        if self.dev:
            subprocess.run(["umount", self.ctx.args.checkpoint_root])
            subprocess.run(["losetup", "-d", self.dev])
        if os.path.exists(self.file):
            os.remove(self.file)


def write_host_config(path, body):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, path)


@figure("throttled-root", runtimes=("arch",), rounds="last",
        enabled=lambda ctx: not ctx.args.quick,
        metrics=["thr_none_ckpt_ms", "thr_zstd_ckpt_ms", "thr_none_restore_ms",
                 "thr_zstd_restore_ms", "thr_saved"])
def fig_throttled_root(ctx, rt):
    """ARCH only: the checkpoint root on a disk limited to THROTTLE_MBPS
    (as EFS can be): memtouch THROTTLE_MIB typical memory checkpointed and
    restored with compression off, then with zstd (the host configuration
    file, which each new shim reads)."""
    config = os.environ.get("ARCH_CONFIG")
    if not config:
        raise NotImplementedFigure("ARCH_CONFIG is not set (bench/run.sh sets it)")
    res = {}
    try:
        with ThrottledRoot(ctx, ctx.args.throttle_mbps, 4):
            for codec in ("none", "zstd"):
                write_host_config(config, 'compression = "%s"\n' % codec)
                got = cr_sample(ctx, rt, ctx.args.throttle_mib, "throttled-root",
                                "thr_%s_" % codec, fill="typical")
                for k in ("ckpt_ms", "restore_ms"):
                    if "thr_%s_%s" % (codec, k) in got:
                        res["thr_%s_%s" % (codec, k)] = got["thr_%s_%s" % (codec, k)]
    finally:
        write_host_config(config, "")
    if "thr_none_ckpt_ms" in res and "thr_zstd_ckpt_ms" in res:
        res["thr_saved"] = res["thr_none_ckpt_ms"] / res["thr_zstd_ckpt_ms"]
    return res


# ---- scale ---------------------------------------------------------------

metric("sc_start_s", "scale: start N (parallel)", "s", chart=False, digits=1)
metric("sc_ckpt_s", "scale: SIGTERM N → all STOPPED", "s", chart=False, digits=1)
metric("sc_ckpt_p50_ms", "scale: per-container kill → STOPPED, median", "ms", chart=False,
       digits=0)
metric("sc_committed", "scale: images committed", "", chart=False, digits=0)
metric("sc_ckpt_failed", "scale: checkpoint failures", "", chart=False, digits=0,
       abs_target=("<=", 0))
metric("sc_restore_s", "scale: re-create N → all started", "s", chart=False, digits=1)
metric("sc_restored", "scale: restored (@restored)", "", chart=False, digits=0)
metric("sc_restore_failed", "scale: restore failures", "", chart=False, digits=0,
       abs_target=("<=", 0))


def parallel(fn, items, workers):
    """[fn(x) for x in items] on `workers` threads; exceptions are returned."""
    def safe(x):
        try:
            return fn(x)
        except Exception as e:  # noqa: BLE001 - counted by the caller
            return e
    with concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(items)))) as pool:
        return list(pool.map(safe, items))


@figure("scale", runtimes=("arch",), rounds="last",
        enabled=lambda ctx: not ctx.args.quick and ctx.args.scale > 0,
        metrics=["sc_start_s", "sc_ckpt_s", "sc_ckpt_p50_ms", "sc_committed", "sc_ckpt_failed",
                 "sc_restore_s", "sc_restored", "sc_restore_failed"])
def fig_scale(ctx, rt):
    """N ARCH containers (memtouch SCALE_MIB): SIGTERM all at once, then
    re-create all at once with new ids and the same keys."""
    n, mib = ctx.args.scale, ctx.args.scale_mib
    par = ctx.args.scale_parallel or n
    keys = [ctx.new_key() for _ in range(n)]
    ids = [ctx.new_id(rt, "sc") for _ in range(n)]
    ids2 = [ctx.new_id(rt, "scr") for _ in range(n)]
    rec = {"n": n, "mib": mib, "parallel": par}
    fig = "scale"
    try:
        t0 = time.perf_counter()
        r = parallel(lambda i: ctx.ctr("run", "-d", "--runtime", RUNTIMES[rt][0],
                                       *ARCH_ENV(keys[i]), ctx.image, ids[i], "memtouch",
                                       str(mib), timeout=600), range(n), par)
        start_s = time.perf_counter() - t0
        bad = [(ids[i], x) for i, x in enumerate(r) if isinstance(x, Exception)]
        for c, e in bad:
            ctx.fail(fig, rt, "start", e)
        started = [i for i, x in enumerate(r) if not isinstance(x, Exception)]
        pids = ctx.task_pids()
        c0 = {}
        deadline = time.perf_counter() + 120
        while len(c0) < len(started) and time.perf_counter() < deadline:
            for i in started:
                if i not in c0 and ids[i] in pids:
                    c = read_count(pids[ids[i]])
                    if c is not None:
                        c0[i] = c
            time.sleep(0.1)
        rec.update(started=len(started), start_s=start_s, touched=len(c0))
        print("bench: scale: %d/%d started in %.1f s" % (len(started), n, start_s),
              file=sys.stderr)
        # -- SIGTERM all at once
        live = [i for i in started if i in c0]
        t0 = time.perf_counter()
        r = parallel(lambda i: ctx.ctr("task", "kill", ids[i], timeout=600), live, par)
        rec["kill_issued_s"] = time.perf_counter() - t0
        for i, x in zip(live, r):
            if isinstance(x, Exception):
                ctx.fail(fig, rt, "kill", x)
        ex = ctx.events.wait([ids[i] for i in live], timeout=600)
        ckpt_s = max([e[0] for e in ex.values()] + [t0]) - t0
        lat = sorted((e[0] - t0) * 1000 for e in ex.values())
        committed, statuses = 0, {}
        for i in live:
            e = ex.get(ids[i])
            statuses[str(e[1] if e else "no-exit")] = statuses.get(str(e[1] if e else "no-exit"), 0) + 1
            try:
                if read_manifest(ctx, keys[i]).get("status") == "committed":
                    committed += 1
            except (OSError, ValueError):
                pass
        rec.update(ckpt_s=ckpt_s, stopped=len(ex), exit_status=statuses,
                   ckpt_latency_ms={"min": lat[0] if lat else None,
                                    "p50": statistics.median(lat) if lat else None,
                                    "p90": lat[int(len(lat) * 0.9)] if lat else None,
                                    "max": lat[-1] if lat else None})
        print("bench: scale: %d STOPPED in %.1f s, %d committed" % (len(ex), ckpt_s, committed),
              file=sys.stderr)
        phases = {}
        for i in live:
            try:
                for k, v in read_manifest(ctx, keys[i])["durations_ms"].items():
                    phases.setdefault(k, []).append(v)
            except (OSError, ValueError, KeyError):
                pass
        rec["durations_ms_median"] = {k: statistics.median(v) for k, v in phases.items()}
        rec["durations_ms_max"] = {k: max(v) for k, v in phases.items()}
        ctx.remove_parallel([ids[i] for i in range(n)])  # exited tasks + containers
        # -- re-create all at once (new ids, same keys)
        t0 = time.perf_counter()
        r = parallel(lambda i: ctx.ctr("run", "-d", "--runtime", RUNTIMES[rt][0],
                                       *ARCH_ENV(keys[i]), ctx.image, ids2[i], "memtouch",
                                       str(mib), timeout=600), live, par)
        restore_s = time.perf_counter() - t0
        for x in r:
            if isinstance(x, Exception):
                ctx.fail(fig, rt, "re-create", x)
        outcomes = {}
        for i in live:
            o = restore_outcome(ctx, keys[i])
            outcomes[o] = outcomes.get(o, 0) + 1
        st, pids = ctx.task_status(), ctx.task_pids()
        running = sum(1 for i in live if st.get(ids2[i]) == "RUNNING")
        cont = sum(1 for i in live if ids2[i] in pids
                   and (read_count(pids[ids2[i]]) or -1) >= c0[i])
        rec.update(restore_s=restore_s, outcomes=outcomes, running_after=running,
                   counter_continued=cont)
        print("bench: scale: re-created %d in %.1f s: %s, %d RUNNING, %d counters continued"
              % (len(live), restore_s, outcomes, running, cont), file=sys.stderr)
        return {"sc_start_s": start_s, "sc_ckpt_s": ckpt_s,
                "sc_ckpt_p50_ms": statistics.median(lat) if lat else 0,
                "sc_committed": committed, "sc_ckpt_failed": n - committed,
                "sc_restore_s": restore_s, "sc_restored": outcomes.get("restored", 0),
                "sc_restore_failed": n - outcomes.get("restored", 0)}
    finally:
        ctx.add_extra(fig, rec)
        ctx.remove_parallel(ids + ids2)
        ctx.remove_arch_images("bench-%s-k" % ctx.run_id)


# --------------------------------------------------------------------------
# runner


def run_cmd(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
        return p.stdout.strip()
    except Exception as e:
        return "unavailable (%s)" % e


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def environment(ctx):
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "containerd": run_cmd(["containerd", "--version"]),
        "ctr_version": run_cmd([ctx.args.ctr, "--address", ctx.address, "version"]),
        "runc": run_cmd(["runc", "--version"]).splitlines()[0:1],
        "shim_git_revision": run_cmd(["git", "-C", REPO, "rev-parse", "HEAD"]),
        "shim_git_dirty": bool(run_cmd(["git", "-C", REPO, "status", "--porcelain",
                                        "--untracked-files=no"])),
        "address": ctx.address,
        "namespace": ctx.namespace,
        "image": ctx.image,
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f
                                     if l.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            env["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    env["cgroup"] = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1/hybrid"
    env["shims"] = {}
    for rt, exe in ctx.shim_exe.items():
        exe = exe.replace(" (deleted)", "")
        info = {"path": exe}
        try:
            info["sha256"] = sha256(exe)
            info["size_bytes"] = os.path.getsize(exe)
            info["version"] = run_cmd([exe, "-v"])
        except OSError as e:
            info["error"] = str(e)
        env["shims"][rt] = info
    return env


def summarise(samples):
    out = {}
    for key, per_rt in samples.items():
        row = {}
        for rt, vals in per_rt.items():
            if vals:
                row[rt] = {"median": statistics.median(vals), "min": min(vals),
                           "max": max(vals), "n": len(vals)}
        if "arch" in row and "runc" in row and row["runc"]["median"]:
            row["ratio"] = row["arch"]["median"] / row["runc"]["median"]
        t = METRICS[key]["target"]
        row["target"] = t
        if t is not None and "ratio" in row:
            row["target_met"] = row["ratio"] <= t
        at = METRICS[key]["abs_target"]
        if at is not None and "arch" in row:
            row["abs_target"] = list(at)
            v = row["arch"]["median"]
            row["target_met"] = v >= at[1] if at[0] == ">=" else v <= at[1]
        out[key] = row
    return out


def fmt(v, digits):
    return "-" if v is None else ("%.*f" % (digits, v))


def print_table(summary, not_impl, keys):
    rows = [("figure", "ARCH median", "runc median", "ARCH/runc", "target", "")]
    for key in keys:
        meta = METRICS[key]
        s = summary.get(key)
        unit = (" " + meta["unit"]) if meta["unit"] else ""
        if meta["target"] is not None:
            t = "≤ %.1f×" % meta["target"]
        elif meta["abs_target"] is not None:
            t = "%s %g%s" % ("≥" if meta["abs_target"][0] == ">=" else "≤",
                             meta["abs_target"][1], unit)
        else:
            t = "-"
        if key in not_impl or s is None or not s.get("arch") and not s.get("runc"):
            rows.append((meta["label"], "not implemented yet" if key in not_impl else "no data",
                         "", "", t, ""))
            continue
        ok = "" if "target_met" not in s else ("ok" if s["target_met"] else "MISSED")
        med = lambda rt: (fmt(s[rt]["median"], meta["digits"]) + unit) if rt in s else "-"
        rows.append((meta["label"], med("arch"), med("runc"),
                     "%.2f" % s["ratio"] if "ratio" in s else "-", t, ok))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(r)))
        if i == 0:
            print("  ".join("-" * x for x in w))


def write_svg(path, summary, not_impl, env, keys):
    keys = [k for k in keys if METRICS[k]["chart"]]
    gw, left, top, ph = 150, 70, 70, 300  # group width, margins, plot height
    width = left + gw * len(keys) + 30
    height = top + ph + 100
    vals = [summary[k]["ratio"] for k in keys if k in summary and "ratio" in summary[k]]
    tgts = [METRICS[k]["target"] for k in keys if METRICS[k]["target"] is not None]
    ymax = max([1.2] + [v * 1.15 for v in vals] + [t * 1.1 for t in tgts])
    ymax = (int(ymax * 5) + 1) / 5.0  # round up to 0.2

    def y(v):
        return top + ph - v / ymax * ph

    col = {"arch": "#d9622b", "runc": "#3b6ea8"}
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">'
         % (width, height, width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="24" font-size="16" font-weight="bold">ARCH vs runc-v2 '
         '(normalised: runc-v2 = 1.0, lower is better)</text>' % left,
         '<text x="%d" y="44" fill="#555">%s · kernel %s · %s CPUs · medians</text>'
         % (left, escape(env.get("date_utc", "")), escape(env.get("kernel", "")), env.get("cpus"))]
    # grid + y axis
    step = 0.2 if ymax <= 2 else 0.5
    v = 0.0
    while v <= ymax + 1e-9:
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/>'
                 % (left, width - 30, y(v), y(v)))
        o.append('<text x="%d" y="%.1f" text-anchor="end" fill="#444">%.1f×</text>'
                 % (left - 6, y(v) + 4, v))
        v += step
    o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333"/>'
             % (left, width - 30, y(0), y(0)))
    o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="2,3"/>'
             % (left, width - 30, y(1), y(1)))
    bw = 44
    for i, k in enumerate(keys):
        meta = METRICS[k]
        gx = left + i * gw + (gw - 2 * bw - 8) / 2
        s = summary.get(k, {})
        label_y = top + ph + 18
        words = meta["label"].split(" ")
        lines, cur = [], ""
        for wd in words:  # wrap the label at ~20 chars
            if cur and len(cur) + 1 + len(wd) > 20:
                lines.append(cur)
                cur = wd
            else:
                cur = (cur + " " + wd).strip()
        lines.append(cur)
        for j, ln in enumerate(lines):
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                     % (left + i * gw + gw / 2, label_y + 15 * j, escape(ln)))
        if k in not_impl or "ratio" not in s:
            o.append('<text x="%.1f" y="%.1f" text-anchor="middle" fill="#888" '
                     'font-style="italic">not implemented</text>'
                     % (left + i * gw + gw / 2, y(0.5)))
            o.append('<text x="%.1f" y="%.1f" text-anchor="middle" fill="#888" '
                     'font-style="italic">yet</text>' % (left + i * gw + gw / 2, y(0.5) + 15))
        else:
            for j, rt in enumerate(("arch", "runc")):
                r = s["ratio"] if rt == "arch" else 1.0
                x = gx + j * (bw + 8)
                o.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"/>'
                         % (x, y(r), bw, y(0) - y(r), col[rt]))
                o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%.2f</text>'
                         % (x + bw / 2, y(r) - 4, r))
                o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" '
                         'fill="white">%s</text>'
                         % (x + bw / 2, y(0) - 6,
                            escape(fmt(s[rt]["median"], meta["digits"]))) if y(0) - y(r) > 16
                         else "")
        if meta["target"] is not None:
            ty = y(meta["target"])
            o.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#1a9641" '
                     'stroke-width="2.5" stroke-dasharray="6,3"/>'
                     % (gx - 8, gx + 2 * bw + 16, ty, ty))
            o.append('<text x="%.1f" y="%d" fill="#1a9641" font-size="11" font-weight="bold" '
                     'text-anchor="middle">target ≤ %.1f×</text>'
                     % (left + i * gw + gw / 2, label_y + 15 * len(lines) + 14, meta["target"]))
        o.append('<text x="%.1f" y="%d" text-anchor="middle" font-size="10" fill="#666">'
                 '(%s)</text>' % (left + i * gw + gw / 2, label_y + 15 * len(lines),
                                  escape(meta["unit"] or "count")))
    # legend
    lx = width - 30 - 220
    for j, (rt, name) in enumerate((("arch", "ARCH (io.containerd.arch.v1)"),
                                    ("runc", "runc-v2 (io.containerd.runc.v2)"))):
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>'
                 % (lx, 54 + 16 * j - 10, col[rt]))
        o.append('<text x="%d" y="%d" font-size="11">%s</text>' % (lx + 17, 54 + 16 * j, name))
    o.append('<text x="%d" y="%d" font-size="10" fill="#666">numbers inside bars: absolute '
             'medians; green dashed: target ratio</text>' % (left, height - 8))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def leak_check(ctx):
    """Anything of this run still around after cleanup?"""
    prefix = "bench-%s-" % ctx.run_id
    leaks = {}
    try:
        c = [x for x in ctx.ctr("container", "ls", "-q").stdout.split() if x.startswith(prefix)]
        if c:
            leaks["containers"] = c
    except Exception as e:
        leaks["ctr_error"] = str(e)
    procs = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            argv = read_cmdline(int(d))
            if any(a.startswith(prefix) for a in argv):
                procs.append("%s %s" % (d, " ".join(argv)[:160]))
    if procs:
        leaks["processes"] = procs
    with open("/proc/self/mountinfo") as f:
        mnts = [l.split()[4] for l in f if prefix in l.split()[4]]
    if mnts:
        leaks["mounts"] = mnts
    state = []
    for base in ("/run/containerd-arch/%s" % ctx.namespace,
                 "/run/containerd/runc/%s" % ctx.namespace):
        try:
            state += [os.path.join(base, x) for x in os.listdir(base) if x.startswith(prefix)]
        except OSError:
            pass
    if state:
        leaks["state_dirs"] = state
    try:
        imgs = [x for x in os.listdir(ctx.ckpt_dir) if x.startswith(prefix)]
    except OSError:
        imgs = []
    if imgs:
        leaks["arch_images"] = [os.path.join(ctx.ckpt_dir, x) for x in imgs]
    try:
        refs = [r for r in ctx.ctr("image", "ls", "-q").stdout.split()
                if r.startswith("bench/%s/" % ctx.run_id)]
        if refs:
            leaks["checkpoint_refs"] = refs
    except Exception:
        pass
    return leaks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", default=os.environ.get(
        "CONTAINERD_ADDRESS", "/run/arch-test/containerd.sock"))
    ap.add_argument("--namespace", default=os.environ.get("CONTAINERD_NAMESPACE", "arch-test"))
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--containers", type=int, default=10,
                    help="idle containers per runtime for the memory figure (default 10)")
    ap.add_argument("--iters", type=int, default=5,
                    help="latency samples per runtime per round (default 5)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to let idle shims settle before reading memory")
    ap.add_argument("--restore-settle", type=float, default=4.0,
                    help="seconds between removing a checkpointed container and its "
                    "restore, for both runtimes (0: at once)")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 rounds, 4 containers, 2 iterations")
    ap.add_argument("--only", default="", help="comma-separated figure names to run")
    ap.add_argument("--ctr", default="ctr")
    ap.add_argument("--checkpoint-root", default=os.environ.get("ARCH_CHECKPOINT_ROOT",
                                                                "/checkpoint"),
                    help="ARCH checkpoint root of the shims (their ARCH_CHECKPOINT_ROOT); "
                         "images are read from / removed in ROOT/NAMESPACE")
    ap.add_argument("--cr-iters", type=int, default=3,
                    help="small checkpoint/restore samples per runtime per round (default 3)")
    ap.add_argument("--small-mib", type=int, default=16, help="memtouch MiB, small (16)")
    ap.add_argument("--big-mib", type=int, default=1024, help="memtouch MiB, big (1024)")
    ap.add_argument("--big-iters", type=int, default=1,
                    help="big checkpoint/restore samples per runtime per round (default 1)")
    ap.add_argument("--archive-mib", type=int, default=256,
                    help="memtouch MiB of the periodic-and-archive figure (256)")
    ap.add_argument("--throttle-mbps", type=int, default=100,
                    help="MB/s each way of the throttled-root figure's disk (100, as EFS)")
    ap.add_argument("--throttle-mib", type=int, default=512,
                    help="memtouch MiB (typical) of the throttled-root figure (512)")
    ap.add_argument("--scale", type=int, default=200,
                    help="ARCH containers for the scale figure (last round; 0 = skip; "
                         "skipped with --quick)")
    ap.add_argument("--scale-mib", type=int, default=4, help="memtouch MiB per scale container")
    ap.add_argument("--scale-parallel", type=int, default=0,
                    help="concurrent ctr calls in the scale figure (0 = all N at once)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.containers, args.iters, args.settle = 2, 4, 2, 0.5
        args.cr_iters, args.big_mib = 1, min(args.big_mib, 128)
    if os.geteuid() != 0:
        sys.exit("bench/run.py must run as root (reads /proc/<shim>/smaps_rollup, runs ctr)")

    ctx = Ctx(args)
    figures = [f for f in FIGURES if (not args.only or f["name"] in args.only.split(","))
               and f["enabled"](ctx)]
    keys = [k for k in METRICS if any(k in f["metrics"] for f in figures)]
    samples = {k: {"arch": [], "runc": []} for f in figures for k in f["metrics"]}
    order_log = []
    not_impl = set()
    t_start = time.time()

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (bg job)

    ctx.ctr("version")  # fail early if containerd is not there
    if args.image not in ctx.ctr("image", "ls", "-q").stdout.split():
        sys.exit("image %s not in namespace %s (hack/containerd-test.sh start imports it)"
                 % (args.image, args.namespace))
    print("bench: run id %s, %d rounds, address %s, ns %s"
          % (ctx.run_id, args.rounds, args.address, args.namespace), file=sys.stderr)
    interrupted = None
    try:
        ctx.events = EventWatcher(ctx)
        # warm-up (not recorded): page cache, snapshotter, first shim exec
        for rt in RUNTIMES:
            cid = ctx.new_id(rt, "warm")
            try:
                ctx.timed_ctr("run", "--rm", "--runtime", RUNTIMES[rt][0], args.image, cid, "true")
            finally:
                ctx.remove([cid])
        flip = 0
        for rnd in range(args.rounds):
            for f in figures:
                if f["name"] in not_impl:
                    continue
                if f["rounds"] == "last" and rnd != args.rounds - 1:
                    continue
                for _ in range(f["samples"](ctx)):
                    order = ("arch", "runc") if flip % 2 == 0 else ("runc", "arch")
                    flip += 1
                    for rt in order:
                        if rt not in f["runtimes"]:
                            continue
                        try:
                            res = f["fn"](ctx, rt)
                        except NotImplementedFigure:
                            not_impl.add(f["name"])
                            not_impl.update(f["metrics"])
                            break
                        for k, v in res.items():
                            samples[k][rt].append(v)
                        order_log.append([rnd, f["name"], rt])
                    if f["name"] in not_impl:
                        break
            print("bench: round %d/%d done (%.0f s)" % (rnd + 1, args.rounds,
                                                        time.time() - t_start), file=sys.stderr)
    except KeyboardInterrupt as e:
        interrupted = "interrupted (%s)" % (e or "Ctrl-C")
        print("bench: %s, cleaning up" % interrupted, file=sys.stderr)
    finally:
        # a second Ctrl-C must not abort the cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ctx.cleanup_all()
        if ctx.events:
            ctx.events.close()
    leaks = leak_check(ctx)
    if leaks:
        print("bench: WARNING leftovers after cleanup: %s" % json.dumps(leaks), file=sys.stderr)

    summary = summarise({k: v for k, v in samples.items() if k not in not_impl})
    env = environment(ctx)
    os.makedirs(args.out, exist_ok=True)
    result = {
        "run_id": ctx.run_id,
        "duration_s": round(time.time() - t_start, 1),
        "interrupted": interrupted,
        "params": {k: getattr(args, k) for k in (
            "rounds", "containers", "iters", "settle", "restore_settle", "quick", "image",
            "checkpoint_root",
            "cr_iters", "small_mib", "big_mib", "big_iters", "archive_mib", "scale", "scale_mib",
            "scale_parallel")},
        "runtimes": {k: v[0] for k, v in RUNTIMES.items()},
        "environment": env,
        "metrics": {k: dict(v, implemented=k not in not_impl) for k, v in METRICS.items()
                    if any(k in f["metrics"] for f in figures)},
        "samples": {k: v for k, v in samples.items() if k not in not_impl},
        "summary": summary,
        "not_implemented": sorted(x for x in not_impl if x not in METRICS),
        "sample_order": order_log,
        "failures": ctx.failures,
        "details": ctx.extra,
        "notes": ctx.notes,
        "leftovers_after_cleanup": leaks,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_svg(os.path.join(args.out, "chart.svg"), summary, not_impl, env, keys)
    print()
    print_table(summary, not_impl, keys)
    if ctx.failures:
        print("\n%d failures:" % len(ctx.failures))
        for x in ctx.failures[:20]:
            print("  %(figure)s %(runtime)s %(what)s: %(error).200s" % x)
    for f in figures:
        if f["name"] in not_impl:
            print("%s: not implemented yet" % f["name"])
    print("\nkernel %s, %s CPUs, %s, runc %s, shim rev %s%s; %.0f s"
          % (env["kernel"], env["cpus"], env["containerd"],
             (env["runc"] or ["?"])[0].split()[-1], env["shim_git_revision"][:12],
             " (dirty)" if env["shim_git_dirty"] else "", result["duration_s"]))
    print("wrote %s/results.json and %s/chart.svg" % (args.out, args.out))
    return 1 if interrupted or leaks else 0


if __name__ == "__main__":
    sys.exit(main())
