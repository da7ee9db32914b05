"""A client no one here wrote, eclipse-zenoh (Python), on a firmware that `qs device`
publishes: run by tests/firmware.rs as `python firmware.py ENDPOINT PREFIX`.

Gets PREFIX/@snapshot and PREFIX/** and hears PREFIX/** for a moment; prints one JSON
line per sample: {"key", "json" (the payload's text), "seq" (the attachment's), "how"}.
The Rust test checks each against the firmware's state at its seq. Exits 1 when nothing
answers.
"""

import json
import sys
import time

import zenoh


def line(how, sample):
    print(
        json.dumps(
            {
                "how": how,
                "key": str(sample.key_expr),
                "json": sample.payload.to_string(),
                "seq": sample.attachment.to_string() if sample.attachment else None,
            }
        ),
        flush=True,
    )


def main():
    endpoint, prefix = sys.argv[1], sys.argv[2]
    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("connect/endpoints", json.dumps([endpoint]))
    config.insert_json5("scouting/multicast/enabled", "false")
    with zenoh.open(config) as session:
        deadline = time.monotonic() + 10
        got = []
        while not got:
            if time.monotonic() > deadline:
                sys.exit("nothing answered under " + prefix)
            got = [r.ok for r in session.get(f"{prefix}/@snapshot", timeout=2.0) if r.ok]
            time.sleep(0.05)
        line("get", got[0])
        for reply in session.get(f"{prefix}/**", timeout=5.0):
            if reply.ok is not None:
                line("get", reply.ok)
        subscriber = session.declare_subscriber(f"{prefix}/**", lambda s: line("put", s))
        time.sleep(1.0)
        subscriber.undeclare()


if __name__ == "__main__":
    main()
