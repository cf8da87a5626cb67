//! Two actors passing messages: a producer sends each message it makes to a
//! consumer through the consumer's handle; the driver asks the consumer what
//! it received. (A Kafka-backed version will come with the connectors.)
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p producer-consumer
//! fabric run examples/target/wasm32-wasip2/release/producer_consumer.wasm
//! ```

use fabric::ActorHandle;

#[fabric::actor]
struct Consumer {
    received: Vec<String>,
}

#[fabric::actor]
impl Consumer {
    fn new() -> Self {
        Consumer {
            received: Vec::new(),
        }
    }

    fn consume(&mut self, message: String) -> usize {
        println!("consumed {message}");
        self.received.push(message);
        self.received.len()
    }

    fn received(&self) -> Vec<String> {
        self.received.clone()
    }
}

#[fabric::actor]
struct Producer {
    consumer: ActorHandle<Consumer>,
    sent: u32,
}

#[fabric::actor]
impl Producer {
    fn new(consumer: ActorHandle<Consumer>) -> Self {
        Producer { consumer, sent: 0 }
    }

    /// Produces `n` messages and waits until the consumer has them all.
    fn produce(&mut self, n: u32) -> fabric::Result<u32> {
        let mut acks = Vec::new();
        for _ in 0..n {
            self.sent += 1;
            acks.push(
                self.consumer
                    .consume(format!("message-{}", self.sent))
                    .remote()?,
            );
        }
        fabric::get_all(&acks)?;
        Ok(self.sent)
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let consumer = Consumer::remote()?;
    let producer = Producer::remote(consumer.clone())?;
    let sent = fabric::get(&producer.produce(5).remote()?)?;
    let received = fabric::get(&consumer.received().remote()?)?;
    println!(
        "producer sent {sent}, consumer received {}: {:?}",
        received.len(),
        received
    );
    Ok(())
}
