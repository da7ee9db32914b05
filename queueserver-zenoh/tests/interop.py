"""A client no one here wrote: eclipse-zenoh (Python) against the wire contract.

Run by tests/zenoh/python.rs as `python interop.py ENDPOINT PREFIX` while a computation
publishes under PREFIX the rig of tests/zenoh/common/mod.rs, whose every value is a function of
the snapshot's seq:

    count = seq, half = seq / 2, motor/speed = seq * 0.25, motor/on = (seq % 2 == 0)

It subscribes, gets by name, by wildcard and the snapshot, and checks every value against
the seq it came with. It prints one JSON line of what it saw and exits 0, or fails an
assertion (exit 1).
"""

import json
import sys
import threading
import time

import zenoh

NAMES = {"count", "half", "motor/speed", "motor/on"}


def expected(name, seq):
    return {
        "count": seq,
        "half": seq / 2,
        "motor/speed": seq * 0.25,
        "motor/on": seq % 2 == 0,
    }[name]


def seq_of(attachment):
    assert attachment is not None, "no attachment"
    text = attachment.to_string()
    assert text.isdigit(), f"attachment {text!r} is no decimal seq"
    return int(text)


def check_value(prefix, key, payload, encoding, attachment):
    """Checks one value of the contract; returns its seq."""
    assert key.startswith(prefix + "/"), key
    name = key[len(prefix) + 1 :]
    assert name in NAMES, f"unexpected key {key}"
    assert str(encoding) == "application/json", f"{key}: encoding {encoding}"
    seq = seq_of(attachment)
    value = json.loads(payload.to_string())
    assert value == expected(name, seq), f"{key} = {value} at seq {seq}"
    assert type(value) is type(expected(name, seq)) or isinstance(value, (int, float)), key
    return name, seq


def get(session, key):
    """Every reply of a get: ('ok', sample) or ('err', text)."""
    replies = []
    for reply in session.get(key, timeout=5.0):
        if reply.ok is not None:
            replies.append(("ok", reply.ok))
        else:
            assert str(reply.err.encoding) == "text/plain", reply.err.encoding
            replies.append(("err", reply.err.payload.to_string()))
    return replies


def main():
    endpoint, prefix = sys.argv[1], sys.argv[2]
    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("connect/endpoints", json.dumps([endpoint]))
    config.insert_json5("scouting/multicast/enabled", "false")
    checks = 0
    with zenoh.open(config) as session:
        # The peer connects in the background: ask until the computation answers.
        deadline = time.monotonic() + 10
        while not any(kind == "ok" for kind, _ in get(session, f"{prefix}/count")):
            assert time.monotonic() < deadline, "the computation never answered"
            time.sleep(0.05)

        lock = threading.Lock()
        values, snapshots = [], []

        def on_value(sample):
            with lock:
                values.append(
                    (str(sample.key_expr), sample.payload, sample.encoding, sample.attachment)
                )

        def on_snapshot(sample):
            with lock:
                snapshots.append((sample.payload, sample.encoding, sample.attachment))

        subscriber = session.declare_subscriber(f"{prefix}/**", on_value)
        snapshot_subscriber = session.declare_subscriber(f"{prefix}/@snapshot", on_snapshot)
        time.sleep(1.0)
        with lock:
            heard, heard_snapshots = list(values), list(snapshots)
        subscriber.undeclare()
        snapshot_subscriber.undeclare()

        # Subscribed values: each checked against its seq; the snapshot never among them.
        assert len(heard) >= 10, f"only {len(heard)} values heard in a second"
        names = set()
        max_seq = 0
        for key, payload, encoding, attachment in heard:
            name, seq = check_value(prefix, key, payload, encoding, attachment)
            names.add(name)
            max_seq = max(max_seq, seq)
            checks += 1
        assert "count" in names, names

        # Snapshots: one JSON object, seq plus every value by name.
        assert heard_snapshots, "no snapshot heard"
        for payload, encoding, attachment in heard_snapshots:
            assert str(encoding) == "application/json"
            snapshot = json.loads(payload.to_string())
            assert snapshot["seq"] == seq_of(attachment)
            assert set(snapshot["values"]) == NAMES, snapshot
            for name, value in snapshot["values"].items():
                assert value == expected(name, snapshot["seq"]), (name, snapshot)
            checks += 1

        # A get by name: one reply, on that key.
        replies = get(session, f"{prefix}/count")
        assert len(replies) == 1 and replies[0][0] == "ok", replies
        sample = replies[0][1]
        check_value(prefix, str(sample.key_expr), sample.payload, sample.encoding, sample.attachment)
        assert str(sample.key_expr) == f"{prefix}/count"
        checks += 1

        # A get by wildcard: one reply per name, each on its concrete key.
        for pattern, wanted in [("**", NAMES), ("motor/*", {"motor/speed", "motor/on"})]:
            replies = get(session, f"{prefix}/{pattern}")
            assert all(kind == "ok" for kind, _ in replies), replies
            got = set()
            for _, sample in replies:
                name, _ = check_value(
                    prefix, str(sample.key_expr), sample.payload, sample.encoding, sample.attachment
                )
                got.add(name)
                checks += 1
            assert got == wanted and len(replies) == len(wanted), (pattern, got)

        # The snapshot by get.
        replies = get(session, f"{prefix}/@snapshot")
        assert len(replies) == 1 and replies[0][0] == "ok", replies
        snapshot = json.loads(replies[0][1].payload.to_string())
        assert snapshot["seq"] == seq_of(replies[0][1].attachment)
        assert all(v == expected(n, snapshot["seq"]) for n, v in snapshot["values"].items())
        checks += 1

        # An unknown name: an error reply that says so.
        replies = get(session, f"{prefix}/torque")
        assert len(replies) == 1 and replies[0][0] == "err", replies
        assert "unknown name" in replies[0][1], replies
        checks += 1

        # The computation's liveliness token.
        tokens = [str(r.ok.key_expr) for r in session.liveliness().get(prefix, timeout=5.0) if r.ok]
        assert tokens == [prefix], tokens
        checks += 1

    print(json.dumps({"checks": checks, "values": len(heard), "max_seq": max_seq}))


if __name__ == "__main__":
    main()
