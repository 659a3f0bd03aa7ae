"""Write support tickets the way another system does: Avro through a Schema Registry, random
keys, and librdkafka's default partitioner (confluent-kafka's producer: consistent_random, not
Java's murmur2). Nothing here knows Tribunal; `pipeline.toml` beside it maps these records in.

    python examples/ticket-triage/produce_tickets.py --count 500 \\
        --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081/apis/ccompat/v7

The texts are BANKING77 test queries (data/demo/intent.jsonl, CC BY 4.0, see NOTICE).
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

HERE = Path(__file__).resolve().parent
TEXTS = HERE.parents[1] / "data" / "demo" / "intent.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--registry", default="http://127.0.0.1:8081/apis/ccompat/v7")
    parser.add_argument("--topic", default="support.tickets")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for future in admin.create_topics([NewTopic(args.topic, args.partitions, 1)]).values():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise

    registry = SchemaRegistryClient({"url": args.registry})
    serialize = AvroSerializer(registry, (HERE / "ticket.avsc").read_text())
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "linger.ms": 20})
    rows = [json.loads(line) for line in TEXTS.read_text().splitlines()][: args.count]
    rng = random.Random(7)
    for n, row in enumerate(rows):
        ticket = {
            "ticket_id": f"HD-{n:06d}",
            "customer": {"id": f"C{rng.randrange(10_000):05d}", "tier": rng.choice(["FREE", "PRO", "ENTERPRISE"])},
            "subject": None if n % 4 == 0 else "Help with my account",
            "body": row["text"],
            "opened_at": int(time.time() * 1000),
        }
        value = serialize(ticket, SerializationContext(args.topic, MessageField.VALUE))
        producer.produce(args.topic, value, key=uuid.uuid4().bytes, headers=[("tenant", b"acme")])
        producer.poll(0)
    producer.flush(30)
    registry.close()
    print(f"wrote {len(rows)} tickets to {args.topic}")  # noqa: T201 - a script's one line of output


if __name__ == "__main__":
    main()
