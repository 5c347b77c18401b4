#!/usr/bin/env python3
"""A second implementation of Cairn's reader, written from docs/FORMAT.md alone.

It opens a repository with a passphrase, lists its snapshots, walks their
trees, verifies every pack and blob it reads, and restores file content:
proof that FORMAT.md says enough to read Cairn repositories without the
Rust code. It also recomputes the chunker's keyed gear table and cut points
(FORMAT.md §4.4) and checks them against tests/vectors/chunks.json.

    python3 tests/vectors/reader.py            # self-test on tests/vectors/
    python3 tests/vectors/reader.py REPO PASSWORD_FILE [TARGET [SNAPSHOT]]
                                               # list, verify (and restore
                                               # the latest or given snapshot)

Needs: cryptography (ChaCha20-Poly1305), blake3, zstandard, argon2-cffi
(`pip install cryptography blake3 zstandard argon2-cffi`). Only what a
reader needs: no locks are taken (FORMAT.md §7.9: pure readers take none).
"""

import hashlib
import json
import os
import struct
import sys
import tempfile

import blake3
import zstandard
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


class Integrity(Exception):
    """Damaged, tampered or undecodable data (FORMAT.md §3)."""


# ---------------------------------------------------------------- §4.3 sealed boxes


def _rotl(v, n):
    return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF


def hchacha20(key, nonce16):
    """HChaCha20 (draft-irtf-cfrg-xchacha §2.2)."""
    s = list(struct.unpack("<4I", b"expand 32-byte k"))
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12), qr(1, 5, 9, 13), qr(2, 6, 10, 14), qr(3, 7, 11, 15)
        qr(0, 5, 10, 15), qr(1, 6, 11, 12), qr(2, 7, 8, 13), qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def open_box(key, ad, box, what):
    """Open `nonce (24) ‖ ciphertext ‖ tag (16)` with XChaCha20-Poly1305."""
    if len(box) < 40:
        raise Integrity(f"{what}: sealed box too short ({len(box)} bytes)")
    nonce = box[:24]
    sub = hchacha20(key, nonce[:16])
    try:
        return ChaCha20Poly1305(sub).decrypt(b"\0" * 4 + nonce[16:], box[24:], ad)
    except InvalidTag:
        raise Integrity(f"{what}: authentication failed") from None


# ---------------------------------------------------------------- §3 wire reader


class R:
    """Little-endian reader; every failure is an Integrity error."""

    def __init__(self, buf, what):
        self.b, self.p, self.what = buf, 0, what

    def take(self, n):
        if n < 0 or self.p + n > len(self.b):
            raise Integrity(f"{self.what}: truncated at byte {self.p}")
        v = self.b[self.p : self.p + n]
        self.p += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def i32(self):
        return struct.unpack("<i", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def i64(self):
        return struct.unpack("<q", self.take(8))[0]

    def bytes16(self):
        return self.take(self.u16())

    def bytes32(self, cap):
        n = self.u32()
        if n > cap:
            raise Integrity(f"{self.what}: field of {n} bytes over {cap}")
        return self.take(n)

    def string16(self):
        try:
            return self.bytes16().decode("utf-8")
        except UnicodeDecodeError:
            raise Integrity(f"{self.what}: string is not UTF-8") from None

    def count(self, n, min_item):
        if n * max(min_item, 1) > len(self.b) - self.p:
            raise Integrity(f"{self.what}: count {n} exceeds the remaining input")
        return n

    def count32(self, min_item):
        return self.count(self.u32(), min_item)

    def count16(self, min_item):
        return self.count(self.u16(), min_item)

    def extensions(self, cap):
        out = []
        for _ in range(self.count16(6)):
            tag = self.u16()
            if out and out[-1][0] >= tag:
                raise Integrity(f"{self.what}: extension tags not strictly increasing")
            out.append((tag, self.bytes32(cap)))
        return out

    def finish(self):
        if self.p != len(self.b):
            raise Integrity(f"{self.what}: {len(self.b) - self.p} trailing bytes")


# ---------------------------------------------------------------- §4.4 chunker


def gear_table():
    """FastCDC's GEAR: the first 8 bytes (big-endian) of MD5 of 64 bytes of i."""
    return [int.from_bytes(hashlib.md5(bytes([i]) * 64).digest()[:8], "big") for i in range(256)]


MASKS = {  # round(log2(size)) -> mask
    6: 0x0000000001803110, 7: 0x0000000018035100, 8: 0x0000001800035300,
    9: 0x0000019000353000, 10: 0x0000590003530000, 11: 0x0000D90003530000,
    12: 0x0000D90103530000, 13: 0x0000D90303530000, 14: 0x0000D90313530000,
    15: 0x0000D90F03530000, 16: 0x0000D90303537000, 17: 0x0000D90703537000,
    18: 0x0000D90707537000, 19: 0x0000D91707537000, 20: 0x0000D91747537000,
    21: 0x0000D91767537000, 22: 0x0000D93767537000, 23: 0x0000D93777537000,
    24: 0x0000D93777577000,
}  # fmt: skip

M64 = (1 << 64) - 1


def keyed_tables(seed):
    g = [v ^ seed for v in gear_table()]
    return g, [(v << 1) & M64 for v in g]


def cut_points(data, min_len, avg_len, max_len, seed):
    """FastCDC v2020, normalisation level 1, keyed gear table (FORMAT.md §4.4)."""
    gear, gear_ls = keyed_tables(seed)
    bits = round(__import__("math").log2(avg_len))
    mask_s, mask_l = MASKS[bits + 1], MASKS[bits - 1]
    mask_s_ls, mask_l_ls = mask_s << 1, mask_l << 1
    out, start = [], 0
    while start < len(data):
        remaining = len(data) - start
        if remaining <= min_len:
            n = remaining
        else:
            center = avg_len
            if remaining > max_len:
                remaining = max_len
            elif remaining < center:
                center = remaining
            n, h, i = remaining, 0, min_len // 2
            src = data
            while i < center // 2:
                a = start + 2 * i
                h = ((h << 2) + gear_ls[src[a]]) & M64
                if h & mask_s_ls == 0:
                    n = 2 * i
                    break
                h = (h + gear[src[a + 1]]) & M64
                if h & mask_s == 0:
                    n = 2 * i + 1
                    break
                i += 1
            else:
                while i < remaining // 2:
                    a = start + 2 * i
                    h = ((h << 2) + gear_ls[src[a]]) & M64
                    if h & mask_l_ls == 0:
                        n = 2 * i
                        break
                    h = (h + gear[src[a + 1]]) & M64
                    if h & mask_l == 0:
                        n = 2 * i + 1
                        break
                    i += 1
        out.append((start, n))
        start += n
    return out


# ---------------------------------------------------------------- the repository


BLOB_DATA, BLOB_TREE = 0, 1


class Repo:
    def __init__(self, root, passphrase):
        self.root = root
        raw = self.get("config", 4096)
        if raw[:8] != b"CAIRNCFG":
            raise Integrity("config: bad magic")
        (version,) = struct.unpack("<I", raw[8:12])
        if version != 1:
            raise Integrity(f"config: unsupported version {version}")
        header = raw[:12]
        self.master = self.unwrap_master(passphrase, header, raw[12:])
        self.seal = blake3.blake3(self.master, derive_key_context="cairn 2026-11 repository v1 seal key").digest()
        body = open_box(self.seal, b"cairn/config/v1\0" + header, raw[12:], "config")
        r = R(body, "config")
        self.repo_id = r.take(32)
        self.min_len, self.avg_len, self.max_len = r.u32(), r.u32(), r.u32()
        self.gear_seed = r.u64()
        self.id_key = r.take(32)
        self.pack_size, self.level, self.created = r.u32(), r.i32(), r.i64()
        r.finish()
        self.index = {}  # (type, id) -> (pack, offset, sealed_len, raw_len, compression)
        self.load_index()

    # storage ------------------------------------------------------------------

    def path(self, name):
        return os.path.join(self.root, *name.split("/"))

    def get(self, name, cap=None):
        p = self.path(name)
        if cap is not None and os.path.getsize(p) > cap:
            raise Integrity(f"{name}: larger than its cap of {cap} bytes")
        with open(p, "rb") as f:
            return f.read()

    def get_range(self, name, off, n):
        with open(self.path(name), "rb") as f:
            f.seek(off)
            b = f.read(n)
        if len(b) != n:
            raise Integrity(f"{name}: short read")
        return b

    def ids(self, d):
        """Objects named <64 lower-case hex> directly in `d` (§2); others ignored."""
        try:
            names = os.listdir(self.path(d))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if len(n) == 64 and all(c in "0123456789abcdef" for c in n))

    def pack_ids(self):
        out = []
        for fan in self.ids_fanout():
            out += [n for n in self.ids("data/" + fan) if n[:2] == fan]
        return sorted(out)

    def ids_fanout(self):
        try:
            return sorted(os.listdir(self.path("data")))
        except FileNotFoundError:
            return []

    # §4.1, §5.1 keys ----------------------------------------------------------

    def unwrap_master(self, passphrase, cfg_header, cfg_box):
        tried = []
        for name in self.ids("keys"):
            kf = self.get("keys/" + name, 4096)
            if kf[:8] != b"CAIRNKEY":
                continue
            r = R(kf, "key file")
            r.take(8)
            version, kdf = r.u16(), r.u8()
            if version not in (1, 2) or kdf != 1:
                continue
            m, t, p = r.u32(), r.u32(), r.u32()
            salt = r.take(32)
            if version == 1:
                r.i64(), r.string16(), r.string16()
            header = kf[: r.p]
            wrapped = r.take(72)
            tried.append((m * t, name, m, t, p, salt, header, wrapped))
        for _, name, m, t, p, salt, header, wrapped in sorted(tried)[:20]:
            wk = hash_secret_raw(passphrase, salt, t, m, p, 32, Type.ID, 0x13)
            try:
                master = open_box(wk, header, wrapped, "key file " + name)
            except Integrity:
                continue
            seal = blake3.blake3(master, derive_key_context="cairn 2026-11 repository v1 seal key").digest()
            try:
                open_box(seal, b"cairn/config/v1\0" + cfg_header, cfg_box, "config")
            except Integrity:
                continue  # a key file of another repository
            return master
        raise Integrity("wrong passphrase: no key file matched")

    # §5.4 index ---------------------------------------------------------------

    def load_object(self, prefix, d, name, cap):
        box = self.get(f"{d}/{name}", cap)
        return open_box(self.seal, prefix + bytes.fromhex(name), box, f"{d}/{name}")

    def load_index(self):
        files = {}
        for name in self.ids("index"):
            try:
                files[name] = parse_index(self.load_object(b"cairn/index/v1\0\0", "index", name, 1 << 30))
            except Integrity as e:
                print(f"warning: skipping index file {name}: {e}", file=sys.stderr)
        superseded = {s.hex() for n, (_, sup) in files.items() for s in sup if s.hex() != n}
        for name, (packs, _) in files.items():
            if name in superseded:
                continue
            for pack, blobs in packs:
                for t, c, bid, off, slen, rlen in blobs:
                    self.index.setdefault((t, bid), (pack.hex(), off, slen, rlen, c))

    # §4.3, §4.5, §7.4 blobs --------------------------------------------------

    def read_blob(self, t, bid):
        try:
            pack, off, slen, rlen, c = self.index[(t, bid)]
        except KeyError:
            raise Integrity(f"blob {bid.hex()} is not in the index") from None
        box = self.get_range(f"data/{pack[:2]}/{pack}", off, slen)
        return self.open_blob(t, c, bid, rlen, box)

    def open_blob(self, t, c, bid, rlen, box):
        ad = b"cairn/blob/v1\0" + bytes([t, c]) + bid
        plain = open_box(self.seal, ad, box, f"blob {bid.hex()}")
        if c == 1:
            try:
                plain = zstandard.ZstdDecompressor().decompress(plain, max_output_size=rlen)
            except zstandard.ZstdError as e:
                raise Integrity(f"blob {bid.hex()}: zstd: {e}") from None
        if len(plain) != rlen:
            raise Integrity(f"blob {bid.hex()}: {len(plain)} bytes, expected {rlen}")
        if blake3.blake3(plain, key=self.id_key).digest() != bid:
            raise Integrity(f"blob {bid.hex()} does not hash to its ID")
        return plain

    # §5.3 packs ---------------------------------------------------------------

    def verify_pack(self, name):
        pack = self.get(f"data/{name[:2]}/{name}")
        if len(pack) < 44:
            raise Integrity(f"pack {name}: too short")
        (hlen,) = struct.unpack("<I", pack[-4:])
        if hlen < 40 or hlen > len(pack) - 4:
            raise Integrity(f"pack {name}: header length {hlen}")
        hbox = pack[len(pack) - 4 - hlen : -4]
        entries = parse_pack_header(open_box(self.seal, b"cairn/packhdr/1\0" + bytes.fromhex(name), hbox, "pack header"))
        off = 0
        for t, c, bid, slen, rlen in entries:
            self.open_blob(t, c, bid, rlen, pack[off : off + slen])
            off += slen
        if off != len(pack) - 4 - hlen:
            raise Integrity(f"pack {name}: entries do not tile the blob region")
        return len(entries)

    # §5.6 snapshots, §5.5 trees -------------------------------------------------

    def snapshots(self):
        out = []
        for name in self.ids("snapshots"):
            try:
                s = parse_snapshot(self.load_object(b"cairn/snapshot/1", "snapshots", name, 64 << 20))
            except Integrity as e:
                print(f"warning: skipping unreadable snapshot {name}: {e}", file=sys.stderr)
                continue
            out.append((name, s))
        return sorted(out, key=lambda x: (x[1]["time_ns"], x[0]))

    def tree(self, tid):
        return parse_tree(self.read_blob(BLOB_TREE, tid))

    def walk(self, tid, prefix=b""):
        for e in self.tree(tid):
            path = prefix + b"/" + e["name"]
            yield path, e
            if e["kind"] == 2:
                yield from self.walk(e["subtree"], path)

    def file_content(self, e):
        return b"".join(self.read_blob(BLOB_DATA, bid) for bid in e["content"])

    def restore(self, tid, target):
        """Content, symlinks, modes and mtimes (no owners, xattrs or holes)."""
        dirs = []
        for path, e in self.walk(tid):
            dst = os.path.join(target, os.fsdecode(path.lstrip(b"/")))
            if e["kind"] == 1:
                with open(dst, "wb") as f:
                    f.write(self.file_content(e))
            elif e["kind"] == 2:
                os.mkdir(dst)
                dirs.append((dst, e))
                continue
            elif e["kind"] == 3:
                os.symlink(e["target"], dst)
                continue
            else:
                continue
            os.chmod(dst, e["mode"])
            os.utime(dst, ns=(e["mtime_ns"], e["mtime_ns"]))
        for dst, e in reversed(dirs):
            os.chmod(dst, e["mode"])
            os.utime(dst, ns=(e["mtime_ns"], e["mtime_ns"]))


def check_lengths(what, slen, rlen, c):
    if slen < 40 or rlen > 512 << 20 or slen > (512 << 20) + 1024:
        raise Integrity(f"{what}: blob lengths out of range")
    if c == 0 and rlen + 40 != slen:
        raise Integrity(f"{what}: uncompressed blob's lengths disagree")


def parse_index(buf):
    r = R(buf, "index file")
    if r.u8() != 1:
        raise Integrity("index file: unknown version")
    packs = []
    for _ in range(r.count32(36)):
        pack = r.take(32)
        blobs = []
        for _ in range(r.count32(46)):
            t, c, bid = r.u8(), r.u8(), r.take(32)
            off, slen, rlen = r.u32(), r.u32(), r.u32()
            if t > 1 or c > 1 or off + slen > 0xFFFFFFFF:
                raise Integrity("index file: bad entry")
            check_lengths("index file", slen, rlen, c)
            blobs.append((t, c, bid, off, slen, rlen))
        packs.append((pack, blobs))
    sup = [r.take(32) for _ in range(r.count32(32))]
    r.finish()
    return packs, sup


def parse_pack_header(buf):
    r = R(buf, "pack header")
    if r.u8() != 1:
        raise Integrity("pack header: unknown version")
    n = r.count32(42)
    if n > 1 << 20:
        raise Integrity("pack header: too many blobs")
    out = []
    for _ in range(n):
        t, c, bid, slen, rlen = r.u8(), r.u8(), r.take(32), r.u32(), r.u32()
        if t > 1 or c > 1:
            raise Integrity("pack header: bad entry")
        check_lengths("pack header", slen, rlen, c)
        out.append((t, c, bid, slen, rlen))
    r.finish()
    return out


def parse_snapshot(buf):
    r = R(buf, "snapshot")
    if r.u8() != 1:
        raise Integrity("snapshot: unknown version")
    s = {"time_ns": r.i64(), "utc_offset_s": r.i32()}
    if not -86400 <= s["utc_offset_s"] <= 86400:
        raise Integrity("snapshot: UTC offset out of range")
    s["tree"] = r.take(32)
    flag = r.u8()
    if flag > 1:
        raise Integrity("snapshot: bad parent flag")
    s["parent"] = r.take(32).hex() if flag else None
    s["hostname"], s["username"] = r.string16(), r.string16()
    s["paths"] = [r.bytes16() for _ in range(r.count16(2))]
    s["tags"] = [r.string16() for _ in range(r.count16(2))]
    s["program_version"] = r.string16()
    s["summary"] = [r.u64() for _ in range(12)]
    s["extensions"] = r.extensions(1 << 20)
    r.finish()
    return s


def parse_tree(buf):
    r = R(buf, "tree node")
    if r.u8() != 1:
        raise Integrity("tree node: unknown version")
    out = []
    for _ in range(r.count32(81)):
        name = r.bytes16()
        if not name or name in (b".", b"..") or b"/" in name or b"\0" in name or len(name) > 4096:
            raise Integrity(f"tree node: unsafe name {name!r}")
        if out and out[-1]["name"] >= name:
            raise Integrity("tree node: entries not strictly increasing")
        e = {"name": name, "kind": r.u8(), "mode": r.u32(), "uid": r.u32(), "gid": r.u32()}
        e["user"], e["group"] = r.string16(), r.string16()
        for t in ("mtime", "ctime"):
            sec, nsec = r.i64(), r.u32()
            if nsec >= 10**9:
                raise Integrity("tree node: nanoseconds out of range")
            e[t + "_ns"] = sec * 10**9 + nsec
        e["inode"], e["device"], e["nlink"], e["size"] = r.u64(), r.u64(), r.u64(), r.u64()
        e["flags"] = r.u8()
        e["xattrs"] = [(r.bytes16(), r.bytes32(1 << 20)) for _ in range(r.count16(6))]
        k = e["kind"]
        if k == 1:
            e["content"] = [r.take(32) for _ in range(r.count32(32))]
        elif k == 2:
            e["subtree"] = r.take(32)
        elif k == 3:
            e["target"] = r.bytes16()
        elif k in (5, 6):
            e["rdev"] = r.u64()
        elif k not in (4, 7):
            raise Integrity(f"tree node: unknown kind {k}")
        e["extensions"] = r.extensions(1 << 20)
        out.append(e)
    r.finish()
    return out


# ---------------------------------------------------------------- self-test


def random_bytes(n, seed):
    """tests/common/mod.rs `random_bytes`: xorshift64, little-endian words."""
    x = ((seed * 0x9E3779B97F4A7C15) & M64) | 1
    out = bytearray()
    while len(out) < n:
        x ^= (x << 13) & M64
        x ^= x >> 7
        x ^= (x << 17) & M64
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


def self_test(vectors):
    ok = lambda cond, msg: cond or sys.exit(f"FAIL: {msg}")  # noqa: E731
    pw_file = os.path.join(tempfile.mkdtemp(), "pass")
    with open(pw_file, "wb") as f:
        f.write(b"cairn-golden-vectors\n")
    passphrase = read_password_file(pw_file)

    # §4.1: a password file's bytes to the wrapping key.
    v = json.load(open(os.path.join(vectors, "kdf.json")))
    pw_path = os.path.join(os.path.dirname(pw_file), "vector")
    with open(pw_path, "wb") as f:
        f.write(bytes.fromhex(v["password_file_hex"]))
    pw = read_password_file(pw_path)
    ok(pw == v["passphrase"].encode(), "password file trimming")
    wk = hash_secret_raw(pw, bytes.fromhex(v["salt_hex"]), v["iterations"], v["memory_kib"], v["parallelism"], 32, Type.ID, 0x13)
    ok(wk.hex() == v["wrapping_key_hex"], "Argon2id wrapping key")

    # §4.4: the gear table, its keying, and the cut points of both cases.
    table = b"".join(x.to_bytes(8, "little") for x in gear_table())
    ok(blake3.blake3(table).hexdigest() == "9af822d1e10df25d0157a43ccd0a73b56d1c1d0a5d77acb4e6e979522d0fe149", "gear table")
    g, gs = keyed_tables(0x0123456789ABCDEF)
    ok((g[0], gs[0], g[1], gs[1]) == (0x3A7E791AA9D5FA33, 0x74FCF23553ABF466, 0x796E2DDD18B9FD69, 0xF2DC5BBA3173FAD2), "keyed gear table")
    with open(os.path.join(vectors, "chunks.json")) as f:
        cases = json.load(f)["cases"]
    id_key = b"cairn golden vector id key 32 b!"
    got = []
    for case, (n, seed) in zip(cases, [(24 << 20, 1), (1 << 20, 2)]):
        ok(case["data"].endswith(f"random_bytes(len = {n}, seed = {seed})"), "chunks.json inputs")
        data = random_bytes(n, seed)
        cuts = cut_points(data, case["min_len"], case["avg_len"], case["max_len"], case["gear_seed"])
        got += [[o, n, blake3.blake3(data[o : o + n], key=id_key).hexdigest()] for o, n in cuts]
        ok(got[-len(cuts) :] == case["cuts (offset, length, blob id)"], f"chunk cut points: {case['label']}")

    # §5.1: the version 2 key file.
    kf = open(os.path.join(vectors, "key-v2"), "rb").read()
    r = R(kf, "key file")
    ok(r.take(8) == b"CAIRNKEY" and r.u16() == 2 and r.u8() == 1, "key-v2 header")
    m, t, p, salt = r.u32(), r.u32(), r.u32(), r.take(32)
    wk = hash_secret_raw(passphrase, salt, t, m, p, 32, Type.ID, 0x13)
    master = open_box(wk, kf[:55], kf[55:127], "key-v2")
    ok(master == b"cairn golden vector master key!!", "key-v2 master secret")
    info_key = blake3.blake3(master, derive_key_context="cairn 2026-12 key file v2 information key").digest()
    info = R(open_box(info_key, b"cairn/keyinfo/v2" + kf[:55], kf[127:], "key info"), "key info")
    want = json.load(open(os.path.join(vectors, "key-v2.json")))
    ok((info.i64(), info.string16(), info.string16()) == (want["created"], want["hostname"], want["username"]), "key-v2 information")
    ok(set(info.take(len(info.b) - info.p)) <= {0} and len(info.b) % 128 == 0, "key-v2 padding")

    # The golden repository: list, verify every pack, walk and restore.
    repo = Repo(os.path.join(vectors, "repo-v1"), passphrase)
    snaps = repo.snapshots()
    ok(len(snaps) == 1, "one snapshot")
    n = sum(repo.verify_pack(pid) for pid in repo.pack_ids())
    ok(n == len(repo.index), f"every indexed blob verified ({n} in packs, {len(repo.index)} indexed)")
    _, s = snaps[0]
    (src,) = s["paths"]
    files = {}
    node = None
    tid = s["tree"]
    for comp in src.strip(b"/").split(b"/"):
        node = [e for e in repo.tree(tid) if e["name"] == comp][0]
        tid = node["subtree"]
    for path, e in repo.walk(tid):
        if e["kind"] == 1:
            body = repo.file_content(e)
            ok(len(body) == e["size"], f"size of {path!r}")
            files[path] = (body, e["mode"])
        elif e["kind"] == 3:
            files[path] = (e["target"], None)
    expect = {
        b"/hello.txt": (b"hello from format version 1\n", 0o644),
        b"/sub/data.bin": (random_bytes(40_000, 42), 0o640),
        b"/sub/text": (b"compressible line\n" * 500, 0o644),
        b"/sub/empty": (b"", 0o644),
        b"/link": (b"hello.txt", None),
    }
    ok(files == expect, f"golden tree content: {sorted(files)}")
    with tempfile.TemporaryDirectory() as d:
        repo.restore(tid, d)
        ok(open(os.path.join(d, "sub/data.bin"), "rb").read() == expect[b"/sub/data.bin"][0], "restore")
    print(f"reader.py: FORMAT.md reader ok (gear table, {len(got)} cut points, key v2, {n} blobs, {len(files)} files)")


def read_password_file(path):
    """§4.1: the file's bytes without trailing CR/LF bytes."""
    b = open(path, "rb").read()
    return b.rstrip(b"\r\n")


def main(argv):
    if len(argv) == 1:
        return self_test(os.path.dirname(os.path.abspath(__file__)))
    repo = Repo(argv[1], read_password_file(argv[2]))
    for pid in repo.pack_ids():
        repo.verify_pack(pid)
    for name, s in repo.snapshots():
        paths = b" ".join(s["paths"]).decode("utf-8", "replace")
        print(name[:8], s["time_ns"], s["hostname"], paths)
        for path, _ in repo.walk(s["tree"]):
            pass
    if len(argv) > 3:
        want = argv[4] if len(argv) > 4 else None
        snaps = [x for x in repo.snapshots() if want is None or x[0].startswith(want)]
        name, s = snaps[-1]
        os.makedirs(argv[3], exist_ok=True)
        repo.restore(s["tree"], argv[3])


if __name__ == "__main__":
    main(sys.argv)
