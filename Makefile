# ARCH — see README.md. Every target that touches containers runs as root.
.PHONY: all build build-test release demo test test-vm bench-predump unit e2e e2e-matrix conformance bench lint clean

all: build

build:
	cargo build --workspace --bins

# The shim with fault injection (the io.arch.test.fault annotation), as the
# reliability suites need it; never ship this build.
build-test:
	cargo build --workspace --bins --features containerd-shim-arch-v1/fault-injection

release:
	cargo build --release -p containerd-shim-arch-v1

# One command: install the rig, run a container under the shim.
demo:
	hack/demo.sh

# One command: the whole suite, as CI runs it.
test:
	hack/test.sh

# The e2e subset on cgroup v2 (cgroupfs and systemd drivers) in a QEMU
# guest: this host's cgroup mounts stay untouched. See hack/vm/.
test-vm:
	hack/vm/test-vm.sh

# Pre-copy (ARCH_PREDUMP) freeze times in the cgroup v2 guest (docs/benchmarks.md).
bench-predump:
	bench/predump.sh

unit:
	cargo test --workspace --exclude arch-e2e

# End-to-end only, against an already running hack/containerd-test.sh instance.
e2e: build-test
	ARCH_E2E_ADDRESS=$${ARCH_TEST_DIR:-/run/arch-test}/containerd.sock cargo test -p arch-e2e

# critest (the CRI validation suite) under runc and arch, side by side, on a
# private CRI containerd with CNI in its own network namespace
# (docs/conformance.md); results in results/conformance.
conformance:
	hack/conformance.sh

# The e2e suite on containerd 1.7, 2.1 and the newest release, one after
# the other on private instances (hack/e2e-matrix.sh).
e2e-matrix: build-test
	ARCH_SHIM_DIR=$${ARCH_SHIM_DIR:-$(CURDIR)/target/debug} \
	ARCH_CHECKPOINT_ROOT=$${ARCH_CHECKPOINT_ROOT:-/var/lib/arch-test/checkpoint} hack/e2e-matrix.sh

bench:
	bench/run.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
