"""One client per process and server (app/store/clients.py), as app/store/__init__.py and app/store/cache.py use it."""

from __future__ import annotations

import threading

from app import store
from app.config import load_config
from app.store import cache, clients


def test_a_client_is_made_once_per_store_and_address_even_when_asked_for_at_once():
    made = []
    barrier = threading.Barrier(8)

    def make():
        made.append(object())
        return made[-1]

    def ask(got):
        barrier.wait()
        got.append(clients.shared("test-store", "here", make))

    got: list = []
    threads = [threading.Thread(target=ask, args=(got,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(client is made[0] for client in got)
    assert clients.shared("test-store", "there", object) is not made[0]
    assert clients.shared("other-store", "here", object) is not made[0]


def test_the_embedded_stores_are_one_each_per_process(tmp_path):
    config = load_config({"MONGO_URI": "", "REDIS_URL": "", "DATA_FOLDER": str(tmp_path)})
    assert store.connect(config) is store.connect(config)
    assert cache.connect(config) is cache.connect(config)
