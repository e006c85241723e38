"""The virtual smartcard test bed: a private pcscd with vsmartcard's vpcd reader driver and our
PIV cards (piv_card.py), driven over a control socket. tests/support/virtual_card.cpp starts it;
docs/operations.md ("The virtual smartcard test bed") says how to run it by hand.

    card_bed.py --dir DIR --ca-cert PEM --ca-key PEM --sid SID [--host-ns MNT,NET]
                [--insert CARD:READER ...] [--debug] [--remove-dir]
    card_bed.py ctl DIR REQUEST...      (one control request, from any shell)

Run it inside fresh mount, network and PID namespaces (unshare -m -n -p -f, as root or with -r
in a user namespace): it refuses to mount anything or start pcscd in the namespaces named by
--host-ns (the caller's own). There it
  - brings up the namespace's loopback interface; vpcd listens on all addresses of the
    namespace, which has no other interface, so the readers are reachable on 127.0.0.1 only and
    their ports collide with nothing outside;
  - puts DIR/run on /run/pcscd (a tmpfs on /run first when the host has no /run/pcscd), so the
    pcscd socket is DIR/run/pcscd.comm: clients outside the namespace reach it with
    PCSCLITE_CSOCK_NAME, and no system pcscd is seen or disturbed;
  - writes DIR/reader.conf (two vpcd readers on its own channel) and DIR/opensc.conf (OpenSC's
    file cache off), makes the cards' keys and certificates (issued by --ca-cert/--ca-key with
    the SID extension of --sid) in DIR/cards/<card>/, starts `pcscd -f -c DIR/reader.conf`
    (log: DIR/pcscd.log), inserts the cards named by --insert, and prints "ready" on stdout.
It stops pcscd and exits at EOF on stdin (its owner closed the pipe or died) or on SIGTERM, and
with --remove-dir removes DIR.

Control socket DIR/control.sock (stream, one line per request, one line per answer "ok ..." or
"err <reason>"):
  ping                    -> ok
  info                    -> ok CARD:SERIAL:READER ... (READER "-" when out)
  insert CARD READER      -> ok once pcscd has powered the card on
  remove CARD [now]       -> ok once the card is out: when pcscd next polls the reader (a
                             real reader's view: APDUs fail from the moment pcscd knows), or
                             with "now" at once (APDUs fail up to 0.4 s before pcscd knows)
  delay CARD MS           -> ok; each signature takes MS longer
  tries CARD              -> ok PIN_TRIES PUK_TRIES
  set-tries CARD N        -> ok; the PIN's tries left (the verification is dropped)
  reset CARD              -> ok; PIN, PUK, tries, delay and counters as provisioned, and
                             the PIN verification forgotten (as after a card reset)
  stats CARD              -> ok apdus=N resets=N sign=N sign_refused=N verify_bad=N ...
"""

import argparse
import ctypes
import datetime
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts (the source tree)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import piv_card  # noqa: E402

CHANNEL = 0x8D10  # readers listen on CHANNEL and CHANNEL + 1 (inside the private namespace)
READERS = 2
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
PCSCD = "/usr/sbin/pcscd"
MS_BIND = 4096
MS_NOSUID, MS_NODEV = 2, 4
PR_SET_PDEATHSIG = 1


def die(text):
    print("err " + text, flush=True)
    sys.exit(1)


# --- the namespace ---------------------------------------------------------------------------

def check_private_namespaces(host_ns):
    mine = ",".join(os.readlink("/proc/self/ns/" + n) for n in ("mnt", "net"))
    if not host_ns:
        die("--host-ns is required (the caller's mnt,net namespaces, so that the bed can refuse "
            "to run in them)")
    host_mnt, host_net = host_ns.split(",")
    my_mnt, my_net = mine.split(",")
    if my_mnt == host_mnt or my_net == host_net:
        die("not in private mount and network namespaces (run it under unshare -m -n -p -f); "
            "refusing to mount on /run/pcscd or to let vpcd listen on the host's addresses")


def loopback_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def libc():
    return ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=None):
    c = libc()
    r = c.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                ctypes.c_ulong(flags), data.encode() if data else None)
    if r != 0:
        e = ctypes.get_errno()
        die("mount %s on %s: %s" % (source, target, os.strerror(e)))


def private_pcscd_dir(run_dir):
    if not os.path.isdir("/run/pcscd"):
        mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        os.mkdir("/run/pcscd", 0o755)
    mount(run_dir, "/run/pcscd", None, MS_BIND)


# --- keys and certificates -------------------------------------------------------------------

def sid_extension(sid):
    """Microsoft's SID extension (1.3.6.1.4.1.311.25.2): SEQUENCE { [0] IMPLICIT OtherName {
    OID 1.3.6.1.4.1.311.25.2.1, [0] EXPLICIT OCTET STRING "<SID text>" } }."""
    def der(tag, value):
        n = len(value)
        if n < 0x80:
            return bytes([tag, n]) + value
        if n < 0x100:
            return bytes([tag, 0x81, n]) + value
        return bytes([tag, 0x82, n >> 8, n & 0xFF]) + value
    oid = bytes.fromhex("060A2B060104018237190201")
    other_name = der(0xA0, oid + der(0xA0, der(0x04, sid.encode())))
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2"),
                                      der(0x30, other_name))


def issue(ca_cert, ca_key, key, common_name, sid):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                                        x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                           "mqsec tests")]))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                            False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False)
               .add_extension(sid_extension(sid), critical=False))
    return builder.sign(ca_key, hashes.SHA256())


def make_card(name, cards_dir, ca_cert, ca_key, sid):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    # OpenSC names the token after the CN of the first certificate (9A).
    certs = {0x9A: issue(ca_cert, ca_key, rsa_key, "mqsec card %s" % name, sid),
             0x9C: issue(ca_cert, ca_key, ec_key, "mqsec card %s signature" % name, sid)}
    ders = {slot: c.public_bytes(serialization.Encoding.DER) for slot, c in certs.items()}
    card = piv_card.PivCard(name, uuid.uuid4().bytes, {0x9A: rsa_key, 0x9C: ec_key}, ders)
    d = os.path.join(cards_dir, name)
    os.makedirs(d, mode=0o755, exist_ok=True)
    for slot, der in ders.items():
        with open(os.path.join(d, "%02x.der" % slot), "wb") as f:
            f.write(der)
    with open(os.path.join(d, "serial"), "w") as f:
        f.write(card.serial() + "\n")
    return card


# --- pcscd -----------------------------------------------------------------------------------

def listening(port):
    """Whether something listens on TCP `port` in this network namespace (/proc/net/tcp)."""
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                    return True
    except OSError:
        pass
    return False


def start_pcscd(dir_, debug):
    with open(os.path.join(dir_, "reader.conf"), "w") as f:
        f.write("# the bed's vpcd readers: ports %d and %d inside its network namespace\n"
                'FRIENDLYNAME "mqsec Virtual PCD"\nDEVICENAME /dev/null:0x%04X\n'
                "LIBPATH %s\nCHANNELID 0x%04X\n" % (CHANNEL, CHANNEL + 1, CHANNEL, VPCD_DRIVER,
                                                    CHANNEL))
    args = [PCSCD, "-f", "-c", os.path.join(dir_, "reader.conf")]
    if debug:
        args += ["-d", "-a"]
    log = open(os.path.join(dir_, "pcscd.log"), "ab")

    def child_setup():
        # pcscd dies with the bed (and with the namespace, whose init the bed is).
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=child_setup, close_fds=True)
    sock = os.path.join(dir_, "run", "pcscd.comm")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die("pcscd exited with status %d (see %s)" % (proc.returncode,
                                                          os.path.join(dir_, "pcscd.log")))
        if os.path.exists(sock) and all(listening(CHANNEL + r) for r in range(READERS)):
            return proc
        time.sleep(0.05)
    proc.kill()
    die("pcscd did not open %s and the vpcd ports within 20 s" % sock)


# --- the cards and the control socket --------------------------------------------------------

class Bed:
    def __init__(self, cards):
        self.cards = cards  # name -> PivCard
        self.links = {}  # name -> (reader, VpcdLink)
        self.mu = threading.Lock()

    def card(self, name):
        c = self.cards.get(name)
        if c is None:
            raise ValueError("no card '%s' (cards: %s)" % (name, " ".join(sorted(self.cards))))
        return c

    def reader_of(self, name):
        link = self.links.get(name)
        if link and link[1].closed.is_set():  # vpcd closed it (pcscd stopped)
            del self.links[name]
            return None
        return link[0] if link else None

    def insert(self, name, reader):
        card = self.card(name)
        if not 0 <= reader < READERS:
            raise ValueError("no reader %d (readers 0..%d)" % (reader, READERS - 1))
        if self.reader_of(name) is not None:
            raise ValueError("card %s is in reader %d; remove it first" % (name,
                                                                          self.reader_of(name)))
        for other in list(self.links):
            if self.reader_of(other) == reader:
                raise ValueError("reader %d holds card %s" % (reader, other))
        link = piv_card.VpcdLink(card, piv_card_port(reader))
        self.links[name] = (reader, link)
        # Inserted once pcscd has powered the card on (it does so when it sees the card).
        if not link.powered.wait(10):
            return "ok inserted (pcscd has not powered it on within 10 s)"
        return "ok"

    def remove(self, name, at_poll=True):
        self.card(name)
        link = self.links.pop(name, None)
        if link is None:
            raise ValueError("card %s is not inserted" % name)
        link[1].close(at_poll)
        return "ok"

    def command(self, line):
        words = line.split()
        if not words:
            raise ValueError("empty request")
        cmd, args = words[0], words[1:]

        def need(n):
            if len(args) != n:
                raise ValueError("%s takes %d argument(s)" % (cmd, n))

        with self.mu:
            if cmd == "ping":
                return "ok"
            if cmd == "info":
                parts = []
                for name in sorted(self.cards):
                    r = self.reader_of(name)
                    parts.append("%s:%s:%s" % (name, self.cards[name].serial(),
                                               "-" if r is None else r))
                return "ok " + " ".join(parts)
            if cmd == "insert":
                need(2)
                return self.insert(args[0], int(args[1]))
            if cmd == "remove":
                if len(args) == 2 and args[1] == "now":
                    return self.remove(args[0], at_poll=False)
                need(1)
                return self.remove(args[0])
            if cmd == "delay":
                need(2)
                card = self.card(args[0])
                with card.lock:
                    card.delay_s = int(args[1]) / 1000.0
                return "ok"
            if cmd == "tries":
                need(1)
                card = self.card(args[0])
                with card.lock:
                    return "ok %d %d" % (card.pin_tries, card.puk_tries)
            if cmd == "set-tries":
                need(2)
                card = self.card(args[0])
                with card.lock:
                    card.pin_tries = max(0, min(card.PIN_TRIES, int(args[1])))
                    card.verified = card.fresh = False
                return "ok"
            if cmd == "reset":
                need(1)
                self.card(args[0]).reset_all()
                return "ok"
            if cmd == "stats":
                need(1)
                card = self.card(args[0])
                with card.lock:
                    return "ok " + " ".join("%s=%d" % kv for kv in sorted(card.stats.items()))
            raise ValueError("unknown request '%s'" % cmd)

    def serve(self, path):
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(8)

        def client(conn):
            with conn, conn.makefile("rw", encoding="ascii", newline="\n") as f:
                for line in f:
                    try:
                        answer = self.command(line.strip())
                    except (ValueError, OSError) as e:
                        answer = "err " + str(e).replace("\n", " ")
                    f.write(answer + "\n")
                    f.flush()

        def accept_loop():
            while True:
                conn, _ = srv.accept()
                threading.Thread(target=client, args=(conn,), daemon=True).start()

        threading.Thread(target=accept_loop, daemon=True).start()

    def stop(self):
        with self.mu:
            for name in list(self.links):
                self.links.pop(name)[1].close()


def piv_card_port(reader):
    return CHANNEL + reader


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ca-cert", required=True)
    ap.add_argument("--ca-key", required=True)
    ap.add_argument("--sid", required=True)
    ap.add_argument("--cards", default="A,B")
    ap.add_argument("--insert", action="append", default=[])
    ap.add_argument("--host-ns", default="")
    ap.add_argument("--debug", action="store_true")
    ap.add_argument("--remove-dir", action="store_true",
                    help="remove DIR when the bed ends (its owner may have been killed)")
    a = ap.parse_args()
    dir_ = os.path.abspath(a.dir)

    def on_term(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_term)

    check_private_namespaces(a.host_ns)
    os.umask(0o022)
    run_dir = os.path.join(dir_, "run")
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    loopback_up()
    private_pcscd_dir(run_dir)

    with open(a.ca_cert, "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(a.ca_key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    cards = {n: make_card(n, os.path.join(dir_, "cards"), ca_cert, ca_key, a.sid)
             for n in a.cards.split(",") if n}

    with open(os.path.join(dir_, "opensc.conf"), "w") as f:
        # --debug: OpenSC logs every call and APDU of the test process to DIR/opensc-debug.log
        debug = "  debug = 9;\n  debug_file = %s;\n" % os.path.join(dir_, "opensc-debug.log")
        f.write("# the bed's OpenSC configuration (OPENSC_CONF): no file cache, so every\n"
                "# certificate and object comes from the card as it is now\n"
                "app default {\n%s  framework pkcs15 {\n    use_file_caching = false;\n  }\n}\n"
                % (debug if a.debug else ""))

    pcscd = start_pcscd(dir_, a.debug)
    bed = Bed(cards)
    control = os.path.join(dir_, "control.sock")
    try:
        os.unlink(control)
    except FileNotFoundError:
        pass
    bed.serve(control)
    try:
        for spec in a.insert:
            name, reader = spec.split(":")
            with bed.mu:
                answer = bed.insert(name, int(reader))
            if answer != "ok":
                die("inserting %s: %s" % (spec, answer))
        print("ready", flush=True)
        # The watchdog: the owner holds the other end of stdin; EOF means it is gone.
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        bed.stop()
        pcscd.terminate()
        try:
            pcscd.wait(5)
        except subprocess.TimeoutExpired:
            pcscd.kill()
            pcscd.wait()
        if a.remove_dir:
            shutil.rmtree(dir_, ignore_errors=True)


def ctl(dir_, words):
    """card_bed.py ctl DIR REQUEST...: one request to a running bed; prints the answer."""
    path = os.path.join(dir_, "control.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall((" ".join(words) + "\n").encode("ascii"))
            answer = s.makefile("r", encoding="ascii").readline().strip()
    except OSError as e:
        answer = "err cannot reach the bed at %s: %s" % (path, e.strerror or e)
    print(answer)
    return 0 if answer.startswith("ok") else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "ctl":
        sys.exit(ctl(sys.argv[2], sys.argv[3:]))
    main()
