#!/usr/bin/env python3
"""Checks the Merkle proof of a batch-signed mqsec message, without mqsec.

Usage: verify-batch-proof.py DIR

DIR holds what `mqsec receive --export` (or the extractor of docs/signature-format.md,
section 9) writes for a batch-signed message: tbs.bin (the message's to-be-signed bytes),
statement.bin (what the device signed) and proof.bin (leaf index, path length, audit path).
The proof is checked as docs/signature-format.md, section 10.6 says: the statement's layout
and bounds, the message's hash algorithm (TBS item 19) equal to the statement's, the path
length that the leaf index and tree size imply, and the path folded from the message's own
leaf, H(0x00 || TBS), up to the root the statement names.

The signature over statement.bin is the other half, checked with openssl (section 10.9):
    openssl x509 -inform DER -in DIR/sender.der -pubkey -noout > pub.pem
    openssl dgst -sha256 -verify pub.pem -signature DIR/signature.bin DIR/statement.bin

Exit status 0 and "proof OK: ..." when the proof holds, 1 and the reason when it does not,
2 for a usage error. Python 3 standard library only.
"""
import hashlib
import os
import struct
import sys

STATEMENT_DOMAIN = b"MQSEC-BATCH-v1\x00"
# TBS domain tags and their item counts: v1, and v2 (a message with a time to be received,
# signed as item 24; docs/signature-format.md, section 3.2).
TBS_DOMAINS = {b"MQSEC-SIG-v1\x00": 23, b"MQSEC-SIG-v2\x00": 24}
HASHES = {0x800C: "sha256", 0x800D: "sha384", 0x800E: "sha512"}  # CALG_SHA_256/384/512
MAX_TREE_SIZE = 65536  # 2^16 leaves, so at most 16 path nodes


class ProofError(Exception):
    pass


def path_length(index, size):
    """Nodes in the audit path of leaf `index` of a tree of `size` leaves (RFC 6962)."""
    n = 0
    while size > 1:
        if (index ^ 1) < size:  # a sibling on this level; else the node is carried up
            n += 1
        index >>= 1
        size = (size + 1) >> 1
    return n


def tbs_items(tbs):
    """The 23 (v1) or 24 (v2) values of a TBS (section 3): domain tag, then len:u32 value."""
    domain = next((d for d in TBS_DOMAINS if tbs.startswith(d)), None)
    if domain is None:
        raise ProofError("tbs.bin does not start with a TBS domain tag (MQSEC-SIG-v1 or -v2)")
    pos, items = len(domain), []
    while pos < len(tbs):
        if pos + 4 > len(tbs):
            raise ProofError("tbs.bin is truncated")
        n = struct.unpack(">I", tbs[pos:pos + 4])[0]
        pos += 4
        if n > len(tbs) - pos:
            raise ProofError("tbs.bin is truncated")
        items.append(tbs[pos:pos + n])
        pos += n
    if len(items) != TBS_DOMAINS[domain]:
        raise ProofError("tbs.bin has %d items, not %d" % (len(items), TBS_DOMAINS[domain]))
    return items


def check(tbs, statement, proof):
    """Returns (leaf index, tree size, hash name, root) or raises ProofError."""
    # The statement (section 10.3): domain, hash_alg:u32, tree_size:u32, root.
    if not statement.startswith(STATEMENT_DOMAIN) or len(statement) < len(STATEMENT_DOMAIN) + 8:
        raise ProofError("statement.bin is not an MQSEC-BATCH-v1 statement")
    alg, size = struct.unpack(">II", statement[15:23])
    if alg not in HASHES:
        raise ProofError("statement hash algorithm 0x%04x is not SHA-256, SHA-384 or SHA-512" % alg)
    name = HASHES[alg]
    width = hashlib.new(name).digest_size
    if len(statement) != 23 + width:
        raise ProofError("statement.bin has %d bytes, not %d" % (len(statement), 23 + width))
    root = statement[23:]
    if not 2 <= size <= MAX_TREE_SIZE:
        raise ProofError("tree size %d is outside 2 .. %d" % (size, MAX_TREE_SIZE))

    # The proof (section 10.4, after the statement): leaf_index:u32, path_len:u8, nodes.
    if len(proof) < 5:
        raise ProofError("proof.bin is truncated")
    index, count = struct.unpack(">IB", proof[:5])
    if index >= size:
        raise ProofError("leaf index %d is not below the tree size %d" % (index, size))
    if count != path_length(index, size):
        raise ProofError("the path has %d nodes; leaf %d of %d needs %d"
                         % (count, index, size, path_length(index, size)))
    if len(proof) != 5 + count * width:
        raise ProofError("proof.bin has %d bytes, not %d" % (len(proof), 5 + count * width))
    path = [proof[5 + i * width:5 + (i + 1) * width] for i in range(count)]

    # The message must have been hashed as the statement says (TBS item 19, hash_alg).
    if tbs_items(tbs)[18] != struct.pack(">I", alg):
        raise ProofError("the message's hash algorithm is not the statement's")

    def h(data):
        return hashlib.new(name, data).digest()

    node = h(b"\x00" + tbs)  # the message's leaf
    m, s, used = index, size, 0
    while s > 1:
        if (m ^ 1) < s:
            sibling = path[used]
            used += 1
            node = h(b"\x01" + sibling + node) if m & 1 else h(b"\x01" + node + sibling)
        m >>= 1
        s = (s + 1) >> 1
    if node != root:
        raise ProofError("the proof does not lead to the statement's root "
                         "(message altered, or the proof of another message)")
    return index, size, name, root


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    d = argv[1]
    try:
        files = {}
        for f in ("tbs.bin", "statement.bin", "proof.bin"):
            with open(os.path.join(d, f), "rb") as fh:
                files[f] = fh.read()
    except OSError as e:
        print("verify-batch-proof: %s" % e, file=sys.stderr)
        return 1
    try:
        index, size, name, root = check(files["tbs.bin"], files["statement.bin"],
                                        files["proof.bin"])
    except ProofError as e:
        print("verify-batch-proof: FAILED: %s" % e)
        return 1
    print("proof OK: leaf %d of %d, %s root %s" % (index, size, name, root.hex()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
