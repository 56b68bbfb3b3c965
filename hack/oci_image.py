#!/usr/bin/env python3
"""Build a tiny, deterministic OCI image-layout tar containing busybox.

Stdlib only. No registry involved. Usage:

    oci_image.py --out OUT.tar [--busybox /bin/busybox]
                 [--ref localhost/arch-test/busybox:latest]
                 [--entrypoint /usr/local/bin/pause]

Layout of the output tar:
    oci-layout, index.json, blobs/sha256/<config|manifest|layer>,
    manifest.json (docker's image-tar index, so that `docker load` of a
    graphdriver daemon, which does not read index.json, accepts it too)
The single layer holds /bin/busybox plus one symlink per applet
(as `busybox --list-full` reports them), /tmp (1777), /proc, /sys, /dev,
/etc/{passwd,group}, /root. Identical inputs give a byte-identical tar.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
CREATED = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# Used if `busybox --list-full` is unavailable.
FALLBACK_APPLETS = """sh ash ls cat echo sleep seq date wc head tail yes true false env id ps
kill mkdir rm rmdir touch test [ [[ expr dd md5sum sha256sum grep egrep fgrep tr stty tty
mount umount hostname uname printf find ln pwd cp mv chmod chown sed awk cut sort uniq xargs
tee basename dirname readlink realpath stat df du free top uptime which whoami nproc
timeout nohup usleep sync vi less more od hexdump xxd base64 gzip gunzip tar ip ifconfig
ping nc wget dmesg""".split()


def sh(data):
    return hashlib.sha256(data).hexdigest()


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tinfo(name, typ, mode, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def applet_paths(busybox):
    try:
        out = subprocess.run([busybox, "--list-full"], check=True,
                             capture_output=True, text=True).stdout
        paths = [p.strip().lstrip("/") for p in out.splitlines() if p.strip()]
    except (OSError, subprocess.CalledProcessError):
        paths = ["bin/" + a for a in FALLBACK_APPLETS]
    return sorted(set(p for p in paths if p and p != "bin/busybox"))


def build_layer(busybox, extras=()):
    with open(busybox, "rb") as f:
        bb = f.read()
    files = {  # path -> (mode, bytes)
        "bin/busybox": (0o755, bb),
        "etc/passwd": (0o644, b"root:x:0:0:root:/root:/bin/sh\n"
                              b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        "etc/group": (0o644, b"root:x:0:\nnogroup:x:65534:\n"),
    }
    dirs = {"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755,
            "usr/sbin": 0o755, "etc": 0o755, "dev": 0o755, "proc": 0o555,
            "sys": 0o555, "root": 0o700, "tmp": 0o1777, "var": 0o755,
            "var/tmp": 0o1777}
    for spec in extras:  # "SRC:DEST[:MODE]", static test programs
        src, dest, *mode = spec.split(":", 2)
        with open(src, "rb") as f:
            files[dest.lstrip("/")] = (int(mode[0], 8) if mode else 0o755, f.read())
    links = {}
    for p in applet_paths(busybox):
        parent = os.path.dirname(p)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)
        if p not in files:
            links[p] = "/bin/busybox"

    entries = []
    for d, mode in dirs.items():
        entries.append((d, "d", mode, None))
    for p, (mode, data) in files.items():
        entries.append((p, "f", mode, data))
    for p, target in links.items():
        entries.append((p, "l", 0o777, target))
    entries.sort(key=lambda e: e[0])

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, payload in entries:
            if kind == "d":
                tar.addfile(tinfo(name + "/", tarfile.DIRTYPE, mode))
            elif kind == "f":
                tar.addfile(tinfo(name, tarfile.REGTYPE, mode, len(payload)),
                            io.BytesIO(payload))
            else:
                tar.addfile(tinfo(name, tarfile.SYMTYPE, mode, linkname=payload))
    raw = raw.getvalue()

    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0,
                       compresslevel=9) as g:
        g.write(raw)
    return raw, gz.getvalue(), len(links)


def build(busybox, ref, out, extras=(), entrypoint=None):
    raw, layer, napplets = build_layer(busybox, extras)
    # An entrypoint makes the same layer a pod sandbox ("pause") image:
    # CRI runs a sandbox image's Entrypoint/Cmd, with no arguments.
    image_config = {"Env": [PATH_ENV], "Cmd": ["/bin/sh"], "WorkingDir": "/"}
    if entrypoint:
        image_config = {"Env": [PATH_ENV], "Entrypoint": [entrypoint], "WorkingDir": "/"}
    config = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sh(raw)]},
        "history": [{"created": CREATED,
                     "created_by": "hack/oci_image.py: busybox-static + applet symlinks"}],
    }
    config_b = canon(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + sh(config_b),
                   "size": len(config_b)},
        "layers": [{"mediaType": MT_LAYER, "digest": "sha256:" + sh(layer),
                    "size": len(layer)}],
    }
    manifest_b = canon(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": "sha256:" + sh(manifest_b),
            "size": len(manifest_b),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": ref,
                "org.opencontainers.image.ref.name": ref,
            },
        }],
    }
    index_b = canon(index)
    layout_b = canon({"imageLayoutVersion": "1.0.0"})
    # docker's format names the same blobs by path; the image id is the
    # config digest.
    docker_b = canon([{
        "Config": "blobs/sha256/" + sh(config_b),
        "RepoTags": [ref],
        "Layers": ["blobs/sha256/" + sh(layer)],
    }])

    blobs = sorted({sh(b): b for b in (config_b, manifest_b, layer)}.items())
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs/", "blobs/sha256/"):
            tar.addfile(tinfo(d, tarfile.DIRTYPE, 0o755))
        for digest, data in blobs:
            tar.addfile(tinfo("blobs/sha256/" + digest, tarfile.REGTYPE, 0o644,
                              len(data)), io.BytesIO(data))
        tar.addfile(tinfo("index.json", tarfile.REGTYPE, 0o644, len(index_b)),
                    io.BytesIO(index_b))
        tar.addfile(tinfo("manifest.json", tarfile.REGTYPE, 0o644, len(docker_b)),
                    io.BytesIO(docker_b))
        tar.addfile(tinfo("oci-layout", tarfile.REGTYPE, 0o644, len(layout_b)),
                    io.BytesIO(layout_b))
    os.replace(tmp, out)
    print("[hack] wrote %s: ref=%s manifest=sha256:%s layer=%d bytes, %d applets"
          % (out, ref, sh(manifest_b), len(layer), napplets), file=sys.stderr)
    print("sha256:" + sh(manifest_b))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--ref", default="localhost/arch-test/busybox:latest")
    ap.add_argument("--extra", action="append", default=[],
                    help="SRC:DEST[:MODE], a program to add to the layer "
                         "(MODE octal, default 755)")
    ap.add_argument("--entrypoint", default=None,
                    help="the image's Entrypoint (default: Cmd /bin/sh)")
    a = ap.parse_args()
    build(a.busybox, a.ref, a.out, a.extra, a.entrypoint)


if __name__ == "__main__":
    main()
