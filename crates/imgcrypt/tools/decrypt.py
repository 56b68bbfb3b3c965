#!/usr/bin/env python3
"""Decrypt one ARCH encrypted image file by hand, independently of the Rust
code: an operator's tool, and a check that docs/image-format.md
("Encrypted image files") says enough to read the format.

    decrypt.py KEY_FILE IDENTITY < FILE.enc > FILE

KEY_FILE: 64 hex characters and an optional newline. IDENTITY: the bytes the
writer was given (the image file's name, e.g. pages-1.img). Needs the
`cryptography` package (ChaCha20-Poly1305; HChaCha20 is done here).
Exits 1 with a message on any fault; writes a chunk only once it verified.
"""
import hashlib
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

HEADER_LEN, TAG_LEN = 43, 16


def rotl(v, n):
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def hchacha20(key, nonce16):
    """XChaCha20's subkey: 20 ChaCha rounds, no final addition, words 0-3 and 12-15."""
    s = list(struct.unpack("<4I", b"expand 32-byte k")) + list(struct.unpack("<8I", key)) + list(
        struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_open(key, nonce24, ad, sealed):
    sub = ChaCha20Poly1305(hchacha20(key, nonce24[:16]))
    return sub.decrypt(b"\0\0\0\0" + nonce24[16:], sealed, ad)


def fail(msg):
    sys.exit(f"decrypt.py: {msg}")


def main():
    key_file, identity = sys.argv[1], sys.argv[2].encode()
    text = open(key_file, "rb").read()
    text = text[:-1] if text.endswith(b"\n") else text
    if len(text) != 64:
        fail("key file: want 64 hex characters")
    key = bytes.fromhex(text.decode())
    key_id = hashlib.sha256(b"arch-imgcrypt key id v1\0" + key).digest()[:8]

    data = sys.stdin.buffer.read()
    header = data[:HEADER_LEN]
    if len(header) < HEADER_LEN:
        fail("truncated header")
    if header[0:8] != b"ARCHCRYP" or header[8] != 1 or header[9] != 1 or header[10:12] != b"\0\0":
        fail("bad header")
    (chunk,) = struct.unpack(">I", header[12:16])
    if chunk & (chunk - 1) or not (1 << 10) <= chunk <= (1 << 24):
        fail("bad chunk size")
    if header[16:24] != key_id:
        fail(f"image encrypted with key id {header[16:24].hex()}, host has key id {key_id.hex()}")
    prefix, ad = header[24:43], header + identity

    body, i, out = data[HEADER_LEN:], 0, sys.stdout.buffer
    while True:
        sealed = body[i * (chunk + TAG_LEN):(i + 1) * (chunk + TAG_LEN)]
        last = (i + 1) * (chunk + TAG_LEN) >= len(body)
        if len(sealed) < TAG_LEN:
            fail("truncated")
        nonce = prefix + struct.pack(">I", i) + bytes([last])
        try:
            out.write(xchacha_open(key, nonce, ad, sealed))
        except InvalidTag:
            fail(f"chunk {i} failed authentication")
        if last:
            return
        i += 1


main()
