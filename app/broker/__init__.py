"""The ZeroMQ task queue: the broker (`python -m app.broker`), and the producer and consumer that talk to it."""
