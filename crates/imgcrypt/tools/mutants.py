#!/usr/bin/env python3
"""Checks that each test can fail: removes one check at a time from the
sources, runs `cargo test -p arch-imgcrypt`, restores the file, and prints
CAUGHT (with the failing tests) or MISSED. Run from crates/imgcrypt with a
clean tree; it rewrites src/ files while it runs and puts them back."""
import subprocess, sys
M = [
 ("last flag", "src/chunk.rs", "n[23] = u8::from(last);", "n[23] = 0; let _ = last;"),
 ("counter", "src/chunk.rs", "n[NONCE_PREFIX_LEN..23].copy_from_slice(&counter.to_be_bytes());", "let _ = counter;"),
 ("header in AD", "src/chunk.rs", "ad.extend_from_slice(header);", "let _ = header;"),
 ("identity in AD", "src/chunk.rs", "ad.extend_from_slice(identity);", "let _ = identity;"),
 ("fault naming", "src/reader.rs", "if self.chunks.verifies(&self.buf[..len], &tag, !last) {", "if false {"),
 ("key id check", "src/reader.rs", "key.check_id(header.key_id)?;", ""),
 ("short tail", "src/reader.rs", "if total < TAG_LEN {", "if total < TAG_LEN && false {"),
 ("reader poison", "src/reader.rs", "self.state = State::Failed;\n", ""),
 ("writer poison", "src/writer.rs", "        if self.poisoned {", "        if false {"),
 ("hold full chunk", "src/writer.rs", "            rest = &rest[n..];\n", "            rest = &rest[n..];\n            if self.filled == self.chunk_size { self.emit(false)?; }\n"),
 ("fast path only with a byte after", "src/writer.rs", "rest.len() > self.chunk_size", "rest.len() >= self.chunk_size"),
 ("direct read only if it fits", "src/reader.rs", "let direct = out.len() >= len;", "let direct = !out.is_empty();"),
 ("magic", "src/header.rs", "if b[0..8] != MAGIC {", "if false {"),
 ("reserved", "src/header.rs", "if b[10..12] != [0, 0] {", "if false {"),
 ("nofollow", "src/key.rs", "libc::O_NOFOLLOW | ", ""),
 ("regular", "src/key.rs", "    if !regular {", "    if false {"),
 ("owner", "src/key.rs", "    if uid != owner {", "    if false {"),
 ("mode", "src/key.rs", "if mode & 0o7777 & !0o600 != 0 {", "if mode & 0o077 != 0 {"),
 ("length", "src/key.rs", "if hex_part.len() != HEX_LEN {", "if hex_part.len() > HEX_LEN {"),
 ("newline once", "src/key.rs", "[rest @ .., b'\\n'] => rest,", "[rest @ .., b'\\n'] => rest.strip_suffix(b\"\\n\").unwrap_or(rest),"),
 ("label", "src/key.rs", "h.update(KEY_ID_LABEL);", ""),
]
for name, f, old, new in M:
    s = open(f).read()
    assert old in s, name
    open(f, "w").write(s.replace(old, new, 1))
    try:
        r = subprocess.run("timeout 300 cargo test -q -p arch-imgcrypt -- --test-threads=2 2>&1", shell=True, capture_output=True, text=True)
        out = r.stdout
        failed = [l.strip().split("::")[-1] for l in out.splitlines() if l.startswith("    ") and "::" in l and " " not in l.strip()]
        status = "CAUGHT" if r.returncode != 0 else "MISSED"
        if "error[" in out: status = "COMPILE-ERROR"
        print(f"{status:8} {name}: rc={r.returncode} {sorted(set(failed))}", flush=True)
    finally:
        open(f, "w").write(s)
