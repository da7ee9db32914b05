"""A subscriber in eclipse-zenoh (Python), for tests/zenoh/security.rs.

    python listen.py CONFIG ENDPOINT KEYEXPR SECONDS

Opens a session with the Zenoh configuration file CONFIG (its user and password), as a
client of the router at ENDPOINT, subscribes to KEYEXPR for SECONDS, and prints one JSON
line: every sample it received, as [key, payload, attachment].
"""

import json
import sys
import threading
import time

import zenoh


def main():
    config_file, endpoint, key, seconds = sys.argv[1:5]
    config = zenoh.Config.from_file(config_file)
    config.insert_json5("connect/endpoints", json.dumps([endpoint]))
    config.insert_json5("mode", '"client"')
    samples = []
    lock = threading.Lock()

    def on_sample(sample):
        attachment = sample.attachment
        with lock:
            samples.append(
                [
                    str(sample.key_expr),
                    sample.payload.to_string(),
                    None if attachment is None else attachment.to_string(),
                ]
            )

    with zenoh.open(config) as session:
        subscriber = session.declare_subscriber(key, on_sample)
        time.sleep(float(seconds))
        subscriber.undeclare()
    with lock:
        print(json.dumps({"samples": samples}))


if __name__ == "__main__":
    main()
