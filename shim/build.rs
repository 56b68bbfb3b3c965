// Records the git revision for `containerd-shim-arch-v1 -v` and `-info`.
fn main() {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !rev.is_empty() {
        println!("cargo:rustc-env=ARCH_GIT_REVISION={rev}");
    }
    // Not position-independent, like containerd and runc's shim as Debian
    // builds them: the linker then resolves the binary's own pointers, so
    // its read-only data after relocation stays file-backed and shared by
    // every shim, instead of ~600 KiB copied into each (docs/security.md).
    println!("cargo:rustc-link-arg-bin=containerd-shim-arch-v1=-no-pie");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
}
