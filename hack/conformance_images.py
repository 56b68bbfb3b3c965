#!/usr/bin/env python3
"""Build the images critest runs, locally, as OCI image-layout tars.

    conformance_images.py --cri-tools DIR --out-dir DIR [--busybox BIN]

There is no image registry here. critest's images are busybox images. critest takes its default and web server
images from --test-images-file (the two localhost refs below), but a few
specs name registry images in their code; containerd never pulls an image
it has, so the same refs are built here from stand-ins (busybox-static plus
the programs in hack/conformance-images/) and imported. The refs are read
from the cri-tools source (DIR, the module that hack/install-critest.sh
built critest from), so that they always match the critest under test.
Prints "REF<TAB>TAR" per image; hack/conformance.sh imports them.
"""
import argparse
import os
import re
import subprocess
import sys

HACK = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HACK, "conformance-images")
sys.path.insert(0, HACK)
import oci_image  # noqa: E402

BUSYBOX_REF = "localhost/arch-conformance/busybox:latest"
WEB_REF = "localhost/arch-conformance/webserver:latest"


def read(path):
    with open(path) as f:
        return f.read()


def critest_refs(cri_tools):
    """The registry refs that critest's specs hard-code: {role: ref}."""
    framework = read(os.path.join(cri_tools, "pkg/framework/test_context.go"))
    validate = "".join(read(os.path.join(cri_tools, "pkg/validate", f))
                       for f in sorted(os.listdir(os.path.join(cri_tools, "pkg/validate")))
                       if f.endswith(".go"))
    m = re.search(r'DefaultRegistryPrefix\s*=\s*"([^"]+)"', framework)
    e2e = m.group(1) + "/e2e-test-images/"
    m = re.search(r'\bregistry\s*=\s*"([^"]+)"', validate)
    cri_registry = m.group(1)
    refs = {}
    for role in ("nginx", "httpd", "nonewprivs"):
        m = re.search(r'DefaultRegistryE2ETestImagesPrefix \+ "(%s:[^"]+)"' % role, validate)
        if not m:
            sys.exit("conformance_images: no %s image in %s" % (role, cri_tools))
        refs[role] = e2e + m.group(1)
    if 'registry + "hostnet-nginx-" + runtime.GOARCH' not in validate:
        sys.exit("conformance_images: no hostnet-nginx image in %s" % cri_tools)
    refs["hostnet-nginx"] = cri_registry + "hostnet-nginx-amd64:latest"
    return refs


def shared_libs(binary):
    """["SRC:DEST"] for the libraries a dynamic binary loads (ldd), at the
    paths the loader looks for them."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    extras = []
    for line in out.splitlines():
        m = re.match(r"\s*(?:\S+ => )?(/\S+) \(0x", line)
        if m:
            extras.append("%s:%s" % (os.path.realpath(m.group(1)), m.group(1)))
    return extras


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cri-tools", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--busybox", default="/bin/busybox",
                    help="a busybox without the standalone shell (whose sh "
                         "runs applets in-process, so that masking /bin/ls "
                         "would not stop `sh -c ls`); dynamic is fine")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out_dir, "bin"), exist_ok=True)
    progs = {}
    for name in ("nginx", "nonewprivs"):
        out = os.path.join(a.out_dir, "bin", name)
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", out,
                        os.path.join(SRC, name + ".c")], check=True)
        progs[name] = out
    # One layer for all: busybox, the missing applets critest runs, the
    # stand-ins; the images differ only in their entrypoint.
    extras = [
        os.path.join(SRC, "pgrep") + ":/usr/local/bin/pgrep",
        os.path.join(SRC, "ipcs") + ":/usr/local/bin/ipcs",
        os.path.join(SRC, "webserver") + ":/usr/local/bin/webserver",
        progs["nginx"] + ":/usr/sbin/nginx",
        progs["nonewprivs"] + ":/usr/local/bin/nonewprivs:4755",
        # A file of its own, as in busybox images with hard-linked applets:
        # the MaskedPaths spec masks /bin/ls, and masking a symlink to
        # /bin/busybox would mask every applet.
        a.busybox + ":/bin/ls",
    ] + shared_libs(a.busybox)
    refs = critest_refs(a.cri_tools)
    images = [
        ("busybox", BUSYBOX_REF, None),
        ("webserver", WEB_REF, "/usr/local/bin/webserver"),
        ("httpd", refs["httpd"], "/usr/local/bin/webserver"),
        ("nginx", refs["nginx"], "/usr/sbin/nginx"),
        ("hostnet-nginx", refs["hostnet-nginx"], "/usr/sbin/nginx"),
        ("nonewprivs", refs["nonewprivs"], "/usr/local/bin/nonewprivs"),
    ]
    for name, ref, entrypoint in images:
        tar = os.path.join(a.out_dir, "arch-conformance-%s.oci.tar" % name)
        stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")  # build() prints the digest
        try:
            oci_image.build(a.busybox, ref, tar, extras, entrypoint)
        finally:
            sys.stdout.close()
            sys.stdout = stdout
        print("%s\t%s" % (ref, tar))


if __name__ == "__main__":
    main()
