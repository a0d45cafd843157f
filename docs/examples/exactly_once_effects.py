"""Exactly-once *effects* with Warren: dedup window + message groups + an idempotent consumer.

Run a broker (`cargo run --release`), then: `pip install pika==1.4.4 && python
docs/examples/exactly_once_effects.py` (AMQP_URL overrides the broker address).

The publisher retries a payment whose confirm it "lost" (the broker drops the duplicate but
confirms it); a consumer crashes after applying a payment but before acking it (the broker
redelivers it; the consumer's processed-ids table makes the second application a no-op); and
per-account ordering holds because the queue groups messages by the `account` header.
"""

import os
import sqlite3

import pika

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")
QUEUE = "payments-example"

# --- the consumer's own database: the effect and the "already processed" record commit together
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE balance (account TEXT PRIMARY KEY, cents INTEGER NOT NULL)")
db.execute("CREATE TABLE processed (message_id TEXT PRIMARY KEY)")


def apply_payment(message_id, account, cents):
    """Applies a payment exactly once: returns False if this message id was applied before."""
    try:
        with db:  # one transaction: both rows or neither
            db.execute("INSERT INTO processed VALUES (?)", (message_id,))
            db.execute(
                "INSERT INTO balance VALUES (?, ?) "
                "ON CONFLICT(account) DO UPDATE SET cents = cents + excluded.cents",
                (account, cents),
            )
        return True
    except sqlite3.IntegrityError:
        return False  # a redelivery of something already applied: skip, but still ack


conn = pika.BlockingConnection(pika.URLParameters(URL))
ch = conn.channel()
ch.queue_delete(QUEUE)
ch.queue_declare(
    QUEUE,
    durable=True,
    arguments={
        "x-message-group-header": "account",  # per-account order, one in flight per account
        "x-deduplication-window": 10 * 60 * 1000,  # drop re-published ids for 10 minutes
    },
)
ch.confirm_delivery()


def publish(message_id, account, cents):
    ch.basic_publish(
        "",
        QUEUE,
        str(cents).encode(),
        pika.BasicProperties(
            message_id=message_id, headers={"account": account}, delivery_mode=2
        ),
    )  # raises if the broker nacks; returns once confirmed


publish("pay-1", "alice", 100)
publish("pay-2", "bob", 50)
publish("pay-1", "alice", 100)  # the publisher lost the confirm and retried: dropped, confirmed
publish("pay-3", "alice", -30)
assert ch.queue_declare(QUEUE, passive=True).method.message_count == 3

# --- consumer 1 applies pay-1, then "crashes" before acking it
c1 = pika.BlockingConnection(pika.URLParameters(URL))
ch1 = c1.channel()
ch1.basic_qos(prefetch_count=1)
method, props, body = next(ch1.consume(QUEUE, inactivity_timeout=5))
assert props.message_id == "pay-1"
assert apply_payment(props.message_id, props.headers["account"], int(body))
c1.close()  # no ack: pay-1 goes back to the head of alice's group

# --- consumer 2 gets everything, alice's payments in order, pay-1 redelivered
seen = []
for method, props, body in ch.consume(QUEUE, inactivity_timeout=2):
    if method is None:
        break
    applied = apply_payment(props.message_id, props.headers["account"], int(body))
    seen.append((props.message_id, method.redelivered, applied))
    ch.basic_ack(method.delivery_tag)
ch.cancel()

print(seen)
alice = [s for s in seen if s[0] in ("pay-1", "pay-3")]
assert alice == [("pay-1", True, False), ("pay-3", False, True)], alice
balances = dict(db.execute("SELECT account, cents FROM balance"))
print(balances)
assert balances == {"alice": 70, "bob": 50}, balances
ch.queue_delete(QUEUE)
conn.close()
print("ok: every payment applied exactly once, in order per account")
