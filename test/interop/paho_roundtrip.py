"""Publish/subscribe round trip with the Eclipse Paho Python client.

Usage: paho_roundtrip.py PORT PROTOCOL   (PROTOCOL: 31 or 311)
Prints one JSON line with what was received; exits 0 only if every message
arrived once with the expected QoS and the retained message had RETAIN set.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

port = int(sys.argv[1])
protocol = {"31": mqtt.MQTTv31, "311": mqtt.MQTTv311}[sys.argv[2]]
prefix = f"paho/{sys.argv[2]}/{int(time.time() * 1000)}"
received = []
subscribed = threading.Event()
done = threading.Event()
EXPECTED = 4  # qos 0, 1, 2 live + 1 retained


def client(name):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{prefix}", protocol=protocol)


def on_message(_c, _u, msg):
    received.append({"topic": msg.topic, "payload": msg.payload.decode(), "qos": msg.qos, "retain": bool(msg.retain)})
    if len(received) >= EXPECTED:
        done.set()


publisher = client("pub")
publisher.connect("127.0.0.1", port)
publisher.loop_start()
publisher.publish(f"{prefix}/retained", "kept", qos=1, retain=True).wait_for_publish(5)

subscriber = client("sub")
subscriber.on_message = on_message
subscriber.on_subscribe = lambda *_a: subscribed.set()
subscriber.connect("127.0.0.1", port)
subscriber.loop_start()
subscriber.subscribe(f"{prefix}/#", qos=2)
if not subscribed.wait(5):
    print(json.dumps({"error": "no SUBACK"}))
    sys.exit(1)

for qos in (0, 1, 2):
    publisher.publish(f"{prefix}/q{qos}", f"m{qos}", qos=qos).wait_for_publish(5)

done.wait(5)
time.sleep(0.2)  # a duplicate would arrive in this window
subscriber.disconnect()
subscriber.loop_stop()
publisher.publish(f"{prefix}/retained", b"", qos=1, retain=True).wait_for_publish(5)
publisher.disconnect()
publisher.loop_stop()

print(json.dumps({"received": received}))
by_topic = {m["topic"].rsplit("/", 1)[1]: m for m in received}
ok = (
    len(received) == EXPECTED
    and by_topic.get("retained", {}).get("retain") is True
    and all(by_topic.get(f"q{q}", {}).get("qos") == q for q in (0, 1, 2))
)
sys.exit(0 if ok else 1)
