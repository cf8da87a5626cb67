"""Two actors passing messages: a producer sends each message it makes to a
consumer through the consumer's handle; the driver asks the consumer what it
received. Prints what examples/producer-consumer prints.

    fabric run examples/python/producer_consumer.py
"""

import json

import fabric


@fabric.remote
class Consumer:
    def __init__(self):
        self.received = []

    def consume(self, message):
        print(f"consumed {message}")
        self.received.append(message)
        return len(self.received)

    def messages(self):
        return self.received


@fabric.remote
class Producer:
    def __init__(self, consumer):
        self.consumer = consumer
        self.sent = 0

    def produce(self, n):
        """Produces `n` messages and waits until the consumer has them all."""
        acks = []
        for _ in range(n):
            self.sent += 1
            acks.append(self.consumer.consume.remote(f"message-{self.sent}"))
        fabric.get(acks)
        return self.sent


@fabric.main
def main():
    consumer = Consumer.remote()
    producer = Producer.remote(consumer)
    sent = fabric.get(producer.produce.remote(5))
    received = fabric.get(consumer.messages.remote())
    # json.dumps writes the list as Rust's `{:?}` does: double quotes.
    print(f"producer sent {sent}, consumer received {len(received)}: {json.dumps(received, separators=(', ', ': '))}")
