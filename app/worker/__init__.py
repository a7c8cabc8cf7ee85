"""The worker: waits for a wake-up, claims a task, runs its job kind (loop.py); tells it is alive (heartbeats.py);
removes the files the service is done with (cleanup.py).

Kept light on purpose: the API imports `app.worker.heartbeats` for its health route and must not load PyArrow.
"""
