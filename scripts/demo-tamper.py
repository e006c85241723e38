#!/usr/bin/python3
# The demo's man in the middle (scripts/demo-run.sh, "Two machines"): takes the next message off
# a machine's broker queue, changes one byte of its body and publishes the changed copy with the
# same message id, properties and durability, then accepts (removes) the original.
#
#   demo-tamper.py BROKER_ENV QUEUE OLD NEW TIMEOUT_S
#
# BROKER_ENV is scripts/broker.sh's broker.env (URL, USER, PASSWORD_FILE; the password is read
# from that file here, never printed). OLD must occur exactly once in the message's bytes and
# NEW must differ from it in one byte. Exit 1 with a message when nothing arrives in TIMEOUT_S.
import sys

from proton import Endpoint, Message, Terminus, Timeout
from proton.reactor import LinkOption
from proton.utils import BlockingConnection


class Durable(LinkOption):
    """The terminus mqsec's own links use: RabbitMQ declares /queue/... durable for them."""

    def apply(self, link):
        (link.source if link.is_receiver else link.target).durability = Terminus.CONFIGURATION


def main():
    env_file, queue, old, new, timeout = sys.argv[1:6]
    old, new = old.encode(), new.encode()
    if len(old) != len(new) or sum(a != b for a, b in zip(old, new)) != 1:
        sys.exit("demo-tamper.py: OLD and NEW must differ in exactly one byte")
    env = dict(line.rstrip("\n").split("=", 1) for line in open(env_file) if "=" in line)
    with open(env["PASSWORD_FILE"]) as f:
        password = f.read().strip()
    address = "/queue/" + queue
    conn = BlockingConnection(env["URL"], timeout=20, user=env["USER"], password=password,
                              allowed_mechs="PLAIN", allow_insecure_mechs=True)
    try:
        receiver = conn.create_receiver(address, credit=1, options=Durable())
        try:
            original = receiver.receive(timeout=float(timeout))
        except Timeout:
            sys.exit(f"demo-tamper.py: no message on {queue} within {timeout} s")
        body = bytes(original.body)
        if body.count(old) != 1:
            receiver.release()
            sys.exit(f"demo-tamper.py: {old!r} is not exactly once in the message")
        forged = Message(body=body.replace(old, new), id=original.id,
                         properties=dict(original.properties or {}),
                         durable=original.durable, inferred=True)  # a binary data section
        conn.create_sender(address, options=Durable()).send(forged)  # waits for "accepted"
        receiver.accept()
        # The link is closed before the connection, else RabbitMQ may re-queue what was just
        # accepted (docs/remote.md). RabbitMQ 3.x answers the close with a detach, which leaves
        # the link remotely active for Proton: wait for either, at most 3 s.
        receiver.link.close()
        try:
            conn.wait(lambda: not receiver.link.state & Endpoint.REMOTE_ACTIVE, timeout=3)
        except Timeout:
            pass
    finally:
        conn.close()
    print(f"(took message {original.id} off {queue} on the broker, changed "
          f"'{old.decode()}' to '{new.decode()}' inside it, published it again with the "
          "same id and properties)")


if __name__ == "__main__":
    main()
