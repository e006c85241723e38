"""A small PIV card for the virtual smartcard test bed (tests/card/card_bed.py).

It answers the APDUs OpenSC's PIV driver sends (NIST SP 800-73-4 as OpenSC 0.23 uses it):
SELECT of the PIV application, GET DATA of the CHUID, the discovery object and the certificates
of slots 9A and 9C, VERIFY of the PIV PIN (tries counted, blocked at zero), RESET RETRY COUNTER
with the PUK, CHANGE REFERENCE DATA, and GENERAL AUTHENTICATE with an RSA-2048 key in 9A and a
P-256 key in 9C. Key 9C is PIN-always, as on real PIV cards: a 9C signature needs a successful
VERIFY before it, and any signature consumes that verification.

The card talks to vsmartcard's vpcd reader driver: it is vpcd's TCP client (connecting is
inserting the card, closing the connection is pulling it). Frames are a 2-byte big-endian length
and a payload; a 1-byte payload is a control code (0 power off, 1 power on, 2 reset, 4 send the
ATR), anything longer is a command APDU answered with one response frame.

Nothing here is secret: the keys are throwaway test keys made when the bed starts.
"""

import socket
import struct
import threading
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

PIV_AID = bytes.fromhex("A000000308000010000100")
# 3B 8B 80 01, historical bytes 80 (compact TLV follows) F9 + the PIV AID (tag F, 9 bytes): OpenSC
# then knows the card as a PIV card from its ATR (SC_CARD_TYPE_PIV_II_HIST), and uses VERIFY
# without data to read the PIN's state and tries left, as it does for most PIV cards.
_ATR_BODY = bytes.fromhex("8B8001") + bytes.fromhex("80F9") + PIV_AID[:9]
def _with_tck(body):
    """The ATR: TS 3B, then `body` (T0 ... historical bytes) and TCK, the XOR of T0 onwards."""
    tck = 0
    for b in body:
        tck ^= b
    return bytes([0x3B]) + body + bytes([tck])


ATR = _with_tck(_ATR_BODY)

# The application property template answered to SELECT (PIX and the AID allocation authority).
APT = bytes.fromhex("61114F0600001000010079074F05A000000308")
# Discovery object: the PIV AID and the PIN usage policy (PIV application PIN only).
DISCOVERY = bytes.fromhex("7E124F0BA0000003080000100001005F2F024000")

OBJ_CHUID = bytes.fromhex("5FC102")
OBJ_CERT = {0x9A: bytes.fromhex("5FC105"), 0x9C: bytes.fromhex("5FC10A")}
ALG_RSA2048 = 0x07
ALG_P256 = 0x11

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6A\x82"
SW_WRONG_DATA = b"\x6A\x80"
SW_REF_NOT_FOUND = b"\x6A\x88"
SW_SECURITY = b"\x69\x82"
SW_BLOCKED = b"\x69\x83"
SW_INS = b"\x6D\x00"
SW_CLA = b"\x6E\x00"
SW_P1P2 = b"\x6B\x00"
SW_WRONG_LENGTH = b"\x67\x00"

VPCD_POWER_OFF, VPCD_POWER_ON, VPCD_RESET, VPCD_ATR = 0, 1, 2, 4


def tlv(tag, value):
    """BER-TLV with a one- or two-byte tag (tag given as bytes) and a definite length."""
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 0xFF])
    return tag + length + value


def parse_tlvs(data):
    """Top-level BER-TLVs of `data` as a list of (tag bytes, value). Raises ValueError."""
    out, i = [], 0
    while i < len(data):
        t0 = i
        i += 1
        if data[t0] & 0x1F == 0x1F:
            while i < len(data) and data[i] & 0x80:
                i += 1
            i += 1
        tag = data[t0:i]
        if i >= len(data):
            raise ValueError("truncated TLV")
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 3 or i + k > len(data):
                raise ValueError("bad TLV length")
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        if i + n > len(data):
            raise ValueError("truncated TLV value")
        out.append((tag, data[i:i + n]))
        i += n
    return out


def parse_apdu(apdu):
    """(cla, ins, p1, p2, data, le, extended) of a command APDU. Raises ValueError."""
    if len(apdu) < 4:
        raise ValueError("APDU shorter than 4 bytes")
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:
        return cla, ins, p1, p2, b"", None, False
    if len(body) == 1:
        return cla, ins, p1, p2, b"", body[0] or 256, False
    if body[0] != 0:  # short Lc
        lc = body[0]
        data = body[1:1 + lc]
        if len(data) != lc:
            raise ValueError("Lc does not match the data")
        rest = body[1 + lc:]
        if len(rest) > 1:
            raise ValueError("trailing bytes after Le")
        return cla, ins, p1, p2, data, (rest[0] or 256) if rest else None, False
    # extended: 00 then two-byte Lc (or Le)
    if len(body) == 3:
        return cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536, True
    lc = int.from_bytes(body[1:3], "big")
    data = body[3:3 + lc]
    if len(data) != lc:
        raise ValueError("extended Lc does not match the data")
    rest = body[3 + lc:]
    le = None
    if len(rest) == 2:
        le = int.from_bytes(rest, "big") or 65536
    elif rest:
        raise ValueError("bad extended Le")
    return cla, ins, p1, p2, data, le, True


def _unpad_pin(data):
    return data.rstrip(b"\xff")


def _pad_pin(pin):
    return pin + b"\xff" * (8 - len(pin))


class PivCard:
    """The card's state (applet, PIN, keys) and its APDU handling. Thread-safe: the vpcd link
    and the bed's control thread both use it."""

    PIN_TRIES = 3
    PUK_TRIES = 3

    def __init__(self, name, guid, keys, certs, pin=b"123456", puk=b"12345678"):
        self.name = name
        self.guid = guid  # 16 bytes; OpenSC makes the token serial from it
        self.keys = keys  # {0x9A: RSA private key, 0x9C: EC private key}
        self.certs = certs  # {0x9A: DER, 0x9C: DER}
        self.default_pin, self.default_puk = pin, puk
        self.lock = threading.Lock()
        self.reset_all()

    # --- state the control interface changes -------------------------------------------------

    def reset_all(self):
        """Back to the provisioned state: PIN and PUK, full tries, nothing verified, no delay,
        counters zero."""
        with self.lock:
            self.pin, self.puk = self.default_pin, self.default_puk
            self.pin_tries, self.puk_tries = self.PIN_TRIES, self.PUK_TRIES
            self.delay_s = 0.0
            self.stats = {"verify_ok": 0, "verify_bad": 0, "verify_blocked": 0, "sign": 0,
                          "sign_refused": 0, "apdus": 0, "resets": 0}
            self._reset_security()

    def _reset_security(self):
        self.verified = False  # the PIN was verified since the last reset
        self.fresh = False  # a VERIFY came after the last signature (PIN-always keys)
        self.chain = b""  # command chaining (CLA 0x10) collects here
        self.pending = b""  # response bytes left for GET RESPONSE
        self.selected = True  # PIV is the card's default application

    def power_event(self):
        """Power off, power on, reset: the card forgets every verification."""
        with self.lock:
            self.stats["resets"] += 1
            self._reset_security()

    def chuid(self):
        # FASC-N (25 bytes, agency code 9999: "use the GUID"), GUID, expiry date, empty signature.
        fascn = bytes.fromhex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")
        body = tlv(b"\x30", fascn) + tlv(b"\x34", self.guid) + tlv(b"\x35", b"20991231") + \
            tlv(b"\x3E", b"") + tlv(b"\xFE", b"")
        return tlv(b"\x53", body)

    def serial(self):
        """The serial number OpenSC's PKCS#11 module shows: the GUID in hex is the PKCS#15
        serial, and CK_TOKEN_INFO keeps its last 16 characters."""
        return self.guid.hex()[16:]

    # --- APDUs -------------------------------------------------------------------------------

    def process(self, apdu):
        """The response APDU (data + SW) to a command APDU."""
        with self.lock:
            self.stats["apdus"] += 1
            try:
                cla, ins, p1, p2, data, le, extended = parse_apdu(apdu)
            except ValueError:
                return SW_WRONG_LENGTH
            if ins == 0xC0:  # GET RESPONSE
                return self._respond(self.pending, le, extended, continuing=True)
            self.pending = b""
            if cla & 0xEC:  # only 00 and 10 (chaining); no secure messaging, no logical channels
                return SW_CLA
            if cla & 0x10:
                self.chain += data
                return SW_OK
            if self.chain:
                data, self.chain = self.chain + data, b""
            handler = {0xA4: self._select, 0xCB: self._get_data, 0x20: self._verify,
                       0x2C: self._reset_retry_counter, 0x24: self._change_reference,
                       0x87: self._general_authenticate}.get(ins)
            if handler is None:
                return SW_INS
            if ins != 0x20:
                # Any other command between a VERIFY and the signature it was for takes the
                # PIN-always verification away, except reading the discovery object, which
                # OpenSC does each time it takes the card (PIV's "active application" test).
                if not (ins == 0xCB and data == bytes.fromhex("5C017E")) and ins != 0x87:
                    self.fresh = False
            result = handler(p1, p2, data)
            if isinstance(result, tuple):
                payload, sw = result
                return self._respond(payload, le, extended, sw=sw)
            return result

    def _respond(self, payload, le, extended, sw=SW_OK, continuing=False):
        if not payload:
            return sw if not continuing else SW_OK
        limit = 65536 if extended else 256
        if le is not None and le < limit:
            limit = le
        if len(payload) <= limit:
            self.pending = b""
            return payload + sw
        self.pending = payload[limit:]
        left = len(self.pending)
        return payload[:limit] + bytes([0x61, left if left < 256 else 0])

    def _select(self, p1, p2, data):
        if p1 != 0x04:
            return SW_NOT_FOUND
        if len(data) >= 5 and PIV_AID.startswith(data[:min(len(data), len(PIV_AID))]) \
                and len(data) >= 9:
            self.selected = True
            return APT, SW_OK
        return SW_NOT_FOUND

    def _get_data(self, p1, p2, data):
        if (p1, p2) != (0x3F, 0xFF):
            return SW_P1P2
        try:
            (tag, oid), = parse_tlvs(data)
        except ValueError:
            return SW_WRONG_DATA
        if tag != b"\x5C":
            return SW_WRONG_DATA
        if oid == b"\x7E":
            return DISCOVERY, SW_OK
        if oid == OBJ_CHUID:
            return self.chuid(), SW_OK
        for slot, obj in OBJ_CERT.items():
            if oid == obj and slot in self.certs:
                body = tlv(b"\x70", self.certs[slot]) + tlv(b"\x71", b"\x00") + tlv(b"\xFE", b"")
                return tlv(b"\x53", body), SW_OK
        return SW_NOT_FOUND

    def _verify(self, p1, p2, data):
        if p2 != 0x80:
            return SW_REF_NOT_FOUND
        if p1 == 0xFF:  # reset the verification
            self.verified = self.fresh = False
            return SW_OK
        if p1 != 0x00:
            return SW_P1P2
        if not data:  # the PIN's state
            if self.pin_tries == 0:
                return SW_BLOCKED
            return SW_OK if self.verified else bytes([0x63, 0xC0 | self.pin_tries])
        if len(data) != 8:
            return SW_WRONG_LENGTH
        if self.pin_tries == 0:
            self.stats["verify_blocked"] += 1
            return SW_BLOCKED
        if _unpad_pin(data) == self.pin:
            self.pin_tries = self.PIN_TRIES
            self.verified = self.fresh = True
            self.stats["verify_ok"] += 1
            return SW_OK
        self.pin_tries -= 1
        self.verified = self.fresh = False
        self.stats["verify_bad"] += 1
        return SW_BLOCKED if self.pin_tries == 0 else bytes([0x63, 0xC0 | self.pin_tries])

    def _reset_retry_counter(self, p1, p2, data):
        if (p1, p2) != (0x00, 0x80):
            return SW_REF_NOT_FOUND
        if len(data) != 16:
            return SW_WRONG_LENGTH
        if self.puk_tries == 0:
            return SW_BLOCKED
        if _unpad_pin(data[:8]) != self.puk:
            self.puk_tries -= 1
            return SW_BLOCKED if self.puk_tries == 0 else bytes([0x63, 0xC0 | self.puk_tries])
        new_pin = _unpad_pin(data[8:])
        if not 6 <= len(new_pin) <= 8:
            return SW_WRONG_DATA
        self.pin, self.pin_tries, self.puk_tries = new_pin, self.PIN_TRIES, self.PUK_TRIES
        self.verified = self.fresh = False
        return SW_OK

    def _change_reference(self, p1, p2, data):
        if p1 != 0x00 or p2 not in (0x80, 0x81):
            return SW_REF_NOT_FOUND
        if len(data) != 16:
            return SW_WRONG_LENGTH
        is_pin = p2 == 0x80
        tries = self.pin_tries if is_pin else self.puk_tries
        if tries == 0:
            return SW_BLOCKED
        if _unpad_pin(data[:8]) != (self.pin if is_pin else self.puk):
            tries -= 1
            if is_pin:
                self.pin_tries = tries
                self.verified = self.fresh = False
            else:
                self.puk_tries = tries
            return SW_BLOCKED if tries == 0 else bytes([0x63, 0xC0 | tries])
        new = _unpad_pin(data[8:])
        if not 6 <= len(new) <= 8:
            return SW_WRONG_DATA
        if is_pin:
            self.pin, self.pin_tries = new, self.PIN_TRIES
            self.verified = True
        else:
            self.puk, self.puk_tries = new, self.PUK_TRIES
        return SW_OK

    def _general_authenticate(self, alg, key_ref, data):
        fresh, self.fresh = self.fresh, False  # any signature consumes a PIN-always VERIFY
        key = self.keys.get(key_ref)
        if key is None:
            return SW_REF_NOT_FOUND
        want_alg = ALG_RSA2048 if key_ref == 0x9A else ALG_P256
        if alg != want_alg:
            return SW_WRONG_DATA
        try:
            (tag, body), = parse_tlvs(data)
            if tag != b"\x7C":
                return SW_WRONG_DATA
            fields = dict(parse_tlvs(body))
        except ValueError:
            return SW_WRONG_DATA
        challenge = fields.get(b"\x81")
        if b"\x82" not in fields or challenge is None:
            return SW_WRONG_DATA
        allowed = self.verified and (fresh if key_ref == 0x9C else True)
        if not allowed:
            self.stats["sign_refused"] += 1
            return SW_SECURITY
        delay = self.delay_s
        if delay:
            # The card is busy while it signs (the lock is held): like one chip doing one thing.
            time.sleep(delay)
        if alg == ALG_RSA2048:
            if len(challenge) != 256:
                return SW_WRONG_DATA
            n = key.private_numbers()
            m = int.from_bytes(challenge, "big")
            if m >= n.public_numbers.n:
                return SW_WRONG_DATA
            # The raw private-key operation (the host padded the block), with the CRT.
            m1 = pow(m, n.dmp1, n.p)
            m2 = pow(m, n.dmq1, n.q)
            h = (n.iqmp * (m1 - m2)) % n.p
            sig = (m2 + h * n.q).to_bytes(256, "big")
        else:
            hash_for = {20: hashes.SHA1(), 28: hashes.SHA224(), 32: hashes.SHA256(),
                        48: hashes.SHA384(), 64: hashes.SHA512()}.get(len(challenge))
            if hash_for is None:
                return SW_WRONG_DATA
            sig = key.sign(challenge, ec.ECDSA(utils.Prehashed(hash_for)))
        self.stats["sign"] += 1
        return tlv(b"\x7C", tlv(b"\x82", sig)), SW_OK


class VpcdLink:
    """A card inserted into one vpcd reader: a TCP connection to 127.0.0.1:port and a thread
    that answers vpcd's frames until the card is pulled (close()) or vpcd goes away."""

    def __init__(self, card, port, on_power_on=None):
        self.card = card
        self.port = port
        self.on_power_on = on_power_on
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = threading.Event()
        self.powered = threading.Event()
        self.pull_requested = threading.Event()
        self.thread = threading.Thread(target=self._run, name="card-" + card.name, daemon=True)
        self.thread.start()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            # Without TCP_QUICKACK before each receive every APDU waits ~40 ms for a delayed ACK.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _run(self):
        try:
            while True:
                (n,) = struct.unpack(">H", self._recv_exact(2))
                payload = self._recv_exact(n) if n else b""
                if len(payload) == 1:
                    code = payload[0]
                    if code == VPCD_ATR and self.pull_requested.is_set():
                        # vpcd asks for the ATR when pcscd polls the reader: the card leaves
                        # now, so pcscd learns of it at the moment APDUs start to fail.
                        break
                    if code == VPCD_ATR:
                        self._send(ATR)
                    elif code in (VPCD_POWER_OFF, VPCD_POWER_ON, VPCD_RESET):
                        self.card.power_event()
                        if code != VPCD_POWER_OFF:
                            self.powered.set()
                    continue
                self._send(self.card.process(payload))
        except (OSError, EOFError):
            pass
        finally:
            self.closed.set()
            try:
                self.sock.close()
            except OSError:
                pass

    def _send(self, data):
        self.sock.sendall(struct.pack(">H", len(data)) + data)  # one write per frame

    def close(self, at_poll=True):
        """Pulls the card. at_poll: when pcscd next polls the reader (every 0.4 s), as a real
        reader reports a card leaving when its contacts break: from then on pcscd knows the card
        is gone and every APDU fails. Otherwise at once: APDUs fail while pcscd still reports
        the card present until its next poll."""
        if at_poll:
            self.pull_requested.set()
            if self.closed.wait(5):
                return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=5)
        try:
            self.sock.close()
        except OSError:
            pass
