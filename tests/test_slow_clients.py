"""Slow clients on the real server (`python run.py`): they hold no thread, and are cut.

gunicorn's own gthread worker gave each connection a thread as soon as its first byte arrived, so a few
clients sending their headers a byte at a time stopped every other request (app/api/serving.py); and its
thread wrote the whole answer itself, so a few clients that asked for a large result and read nothing did
the same. Timing is not measured here (bench/slow_clients.py does): only that ping answers at all while the
slow ones are open, that the deadlines cut them (408 for senders, a reset for readers), and that what is
answered arrives whole.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.api.serving import Budget, Outbox, WriteTimeout
from tests.support.service import Server, Service, multipart
from tests.test_streams_server import new_uploader

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = Service(
        tmp_path_factory.mktemp("slow"),
        WORKERS="0",
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    )
    service.server = service.start()
    yield service
    service.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def trickle_until_answered(sock: socket.socket, limit: float, data: bytes = b"a", every: float = 0.25):
    """Send `data` a byte every `every` s until the server closes the connection; (seconds, its answer)."""
    started = time.monotonic()
    answer = b""
    sent = 0
    while time.monotonic() - started < limit:
        ready, _, _ = select.select([sock], [], [], every)
        if ready:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk  # the server closes after its answer
            continue
        try:
            sock.send(data[sent % len(data) : sent % len(data) + 1])
            sent += 1
        except OSError:
            break
    return time.monotonic() - started, answer


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_ping_answers_while_twenty_slow_header_clients_are_open(service):
    slow = [connect(service.port) for _ in range(20)]
    try:
        for sock in slow:  # each starts a request and stalls inside its headers, as a byte-a-second client does
            sock.sendall(b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        time.sleep(0.5)  # gthread would now have a thread blocked in each of them
        status, _, body = service.server.request("GET", "/api/v1/ping")
        assert (status, body) == (200, {"ok": True})
        still_open = [s for s in slow if not select.select([s], [], [], 0)[0]]
        assert len(still_open) == 20, "ping should answer before the slow clients were cut"
    finally:
        for sock in slow:
            sock.close()


def test_slow_headers_are_cut_with_408_after_the_header_timeout(service):
    with connect(service.port) as sock:
        sock.sendall(b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        elapsed, answer = trickle_until_answered(sock, limit=30, data=b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert b"Connection: close" in answer
    assert HEADER_TIMEOUT - 0.2 <= elapsed < HEADER_TIMEOUT + 10


def test_a_client_that_sends_nothing_is_closed_after_the_header_timeout(service):
    with connect(service.port) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert HEADER_TIMEOUT - 0.2 <= time.monotonic() - started < HEADER_TIMEOUT + 10


def test_headers_past_64_kib_are_431_at_once_and_headers_within_are_served(service):
    """The loop holds a connection's bytes until its headers end: 1 MiB each before (a thousand connections that
    sent 1,000,000 bytes of headers and stalled held a gigabyte until the header timeout answered 408)."""
    line = b"X-Pad: " + b"p" * 8000 + b"\r\n"
    start = b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with connect(service.port) as sock:
        sock.sendall(start + line * 8)  # 64,100 bytes: within, still waited for
        sock.sendall(b"X-Last: 1\r\nConnection: close\r\n\r\n")
        answer, _ = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"ok":true}\n'), answer[:200]
    with connect(service.port) as sock:
        sock.sendall(start + line * 9)  # 72,100 bytes, no end of headers: then it stalls
        answer, _ = read_to_end(sock)
    status, body = status_and_json(answer)
    assert (status, body["error"]["code"]) == (431, "request_header_fields_too_large"), body
    assert body["error"]["message"] == "The request line and headers are longer than 64 KiB."


@pytest.mark.parametrize("sent_first", [0, 200_000], ids=["from-the-start", "after-200KB"])
def test_a_slow_upload_body_is_cut_and_leaves_no_task_and_no_file(service, sent_first):
    """From the start: cut by the event loop; after 200 KB (streamed to a partial file by a thread): cut there."""
    rows = b"title,release_date\n" + b"Slow Movie,2000-01-01\n" * 50_000
    head = (
        b"POST /api/v1/upload?filename=slow.csv HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        b"Authorization: Bearer " + service.server.key.encode() + b"\r\n"
        b"Content-Length: " + str(len(rows)).encode() + b"\r\n\r\n"
    )
    with connect(service.port) as sock:
        sock.sendall(head + rows[:sent_first])
        elapsed, answer = trickle_until_answered(sock, limit=30, data=rows[sent_first : sent_first + 1000])
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT - 0.2 <= elapsed < BODY_TIMEOUT + 10
    uploads = service.env["UPLOAD_FOLDER"]
    assert sorted(p.name for p in Path(uploads).iterdir()) == []
    status, _, listing = service.server.request("GET", "/api/v1/processes")
    assert status == 200 and listing["total_docs"] == 0, listing


def test_pipelined_requests_on_one_connection_are_all_answered(service):
    """The read-ahead hands complete requests on, pipelined ones included."""
    with connect(service.port) as sock:
        request = b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request * 3)  # pipelined: three answers on one connection
        answer = b""
        deadline = time.monotonic() + 30
        while answer.count(b'{"ok":true}') < 3 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.count(b"HTTP/1.1 200") == 3


def start_upload(port: int, key: str, first: int = 64 * 1024) -> socket.socket:
    """An upload announcing 50 MB, its headers and `first` bytes of its body sent at once."""
    head = (
        b"POST /api/v1/upload?filename=slow.csv HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(50 << 20).encode() + b"\r\n\r\n"
    )
    sock = connect(port)
    sock.sendall(head + b"title,release_date\n" + b"x" * first)
    return sock


def test_uploads_sent_just_fast_enough_cannot_take_every_thread(service):
    """WEB_THREADS (16) uploads from eight uploader keys, each sending 64 KiB a second (above the floor of 64 KiB
    per BODY_TIMEOUT_SECONDS, so never cut): each held a thread while its body arrived, and ping hung for as
    long as they went on. MAX_UPLOADS_RECEIVING (4) are read; the others are refused at once, 503."""
    secrets = [new_uploader(service.server)[1] for _ in range(8)]
    socks = [start_upload(service.port, secret) for secret in secrets for _ in range(2)]
    answers: dict[int, bytes] = {}
    stop = threading.Event()

    def feed() -> None:  # 16 KiB to each open upload every 0.25 s; an answered one stops
        while not stop.wait(0.25):
            for i, sock in enumerate(socks):
                if i in answers:
                    continue
                if select.select([sock], [], [], 0)[0]:
                    answers[i] = sock.recv(65536)
                    continue
                try:
                    sock.send(b"x" * 16384)
                except OSError:
                    answers[i] = b""

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(2 * BODY_TIMEOUT)  # past a body deadline: the uploads still arriving are not being cut
        pings = [Server(service.port, timeout=5).request("GET", "/api/v1/ping", key=None)[0] for _ in range(3)]
        assert pings == [200, 200, 200]
        refused = {i: status_and_json(answer) for i, answer in answers.items()}
        assert len(refused) == len(socks) - 4, refused
        assert {(status, body["error"]["code"]) for status, body in refused.values()} == {(503, "too_many_uploads")}
    finally:
        stop.set()
        feeder.join()
        for sock in socks:
            sock.close()


def test_one_key_gets_uploads_per_key_slots_and_they_come_back(service):
    _, secret = new_uploader(service.server)
    uploads = [start_upload(service.port, secret) for _ in range(3)]
    try:
        # Whichever the server took third is refused at once, the other two hold their slots; on a busy machine
        # its threads need not take them in the order they were sent.
        answered = select.select(uploads, [], [], 30)[0]
        assert len(answered) == 1, f"{len(answered)} of the three uploads answered first"
        status, body = status_and_json(read_to_end(answered[0])[0])
        assert status == 429 and body["error"]["code"] == "too_many_uploads_for_key", body
    finally:
        for sock in uploads:
            sock.close()
    time.sleep(0.5)  # the server sees them close
    admin = [start_upload(service.port, service.server.key) for _ in range(3)]  # admins: exempt, as from quotas
    time.sleep(0.5)
    assert not select.select(admin, [], [], 0)[0], "an admin's upload was refused"
    for sock in admin:
        sock.close()
    time.sleep(0.5)
    body, headers = multipart(b"title,release_date\nBack,2000-01-01\n", "back.csv")
    status, _, answer = Server(service.port).request("POST", "/api/v1/upload", body, headers, key=secret)
    assert status == 202, answer


def test_a_chunked_body_to_another_route_is_413_unless_it_ends_in_the_loop(service):
    """No key needed: a chunked POST in one-byte chunks (six bytes of wire a byte) that stalls after 130 KiB of
    wire. The loop handed it to a thread after 64 KiB, and the thread waited BODY_TIMEOUT_SECONDS for the rest
    of a body no route reads: sixteen such requests held every thread, again after each 408."""
    chunks = b"1\r\nx\r\n" * (130 * 1024 // 6)
    socks = []
    for path in ("/nowhere", "/api/v1/keys", "/api/v1/ping") * 6:
        sock = connect(service.port)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunks)
        socks.append(sock)
    try:
        for sock in socks:
            status, body = status_and_json(read_to_end(sock)[0])
            assert (status, body["error"]["code"]) == (413, "request_entity_too_large"), body
    finally:
        for sock in socks:
            sock.close()
    # An upload's chunked body goes on to its thread past that, whichever form its target has.
    rows = b"title,release_date\n" + b"Chunked Movie,2000-01-01\n" * 12_000  # 300 KB
    body = b"".join(b"%x\r\n%s\r\n" % (len(rows[i : i + 4096]), rows[i : i + 4096]) for i in range(0, len(rows), 4096))
    target = f"http://127.0.0.1:{service.port}/api/v1/upload?filename=chunked.csv"
    with connect(service.port) as sock:
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {service.server.key}\r\n"
            "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            + body
            + b"0\r\n\r\n"
        )
        status, answer = status_and_json(read_to_end(sock)[0])
    assert status == 202, answer


# --- clients that do not read their answer -------------------------------------------------------------------

WRITE_TIMEOUT = 3
READER_THREADS = 4  # fewer than the stalled clients below: each would have held one for as long as it stayed


def with_a_large_result(workdir: Path) -> tuple[Service, str, bytes]:
    """A service with an ingest worker and a plays result of about 7.8 MB (far more than the socket buffers of a
    client that reads nothing, so the server is left holding most of it); (service, result path, its bytes)."""
    service = Service(
        workdir,
        WEB_THREADS=str(READER_THREADS),
        SSE_MAX_STREAMS="2",
        MAX_UPLOADS_RECEIVING="2",
        WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT),
    )
    server = service.server = service.start()
    try:
        plays = workdir / "plays.csv"
        plays.write_text(
            "Song,Date,Number of Plays\n" + "".join(f"Song {i:07d},2020-01-01,1\n" for i in range(300_000))
        )
        status, _, task = server.upload(plays, "plays.csv")
        assert status == 202, task
        task = server.wait_for(task["task_id"], timeout=120)
        status, headers, result = server.request("GET", task["result_url"], raw=True)
        assert status == 200 and len(result) > 7_000_000, (status, len(result))
    except BaseException:
        service.stop()
        raise
    return service, task["result_url"], result


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    service, url, result = with_a_large_result(tmp_path_factory.mktemp("readers"))
    yield service, url, result
    service.stop()


def ask_and_stall(port: int, path: str, key: str, extra: bytes = b"") -> socket.socket:
    """Send a GET and read nothing; a small receive buffer, as an attacker would set, keeps the kernel from
    taking the answer off the server's hands."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n".encode() + extra + b"\r\n"
    )
    return sock


def read_to_end(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server still sends; (bytes, whether the connection ended with a reset)."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), False
        data += chunk


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def test_ping_and_health_answer_while_twenty_clients_never_read_a_large_result(readers):
    service, url, result = readers
    server = service.server
    stalled = [ask_and_stall(service.port, url, server.key) for _ in range(20)]
    try:
        time.sleep(0.5)  # gthread would now have each of its 4 threads blocked in a send
        quick = type(server)(service.port, server.key, timeout=5)
        assert quick.request("GET", "/api/v1/ping")[::2] == (200, {"ok": True})
        status, _, health = quick.request("GET", "/api/v1/health")
        assert status == 200 and health["status"] == "ok", health

        # Past the deadline: what the client's own socket buffer took counts, and the loop looks every second.
        time.sleep(WRITE_TIMEOUT + 4)
        for sock in stalled:  # now they read: what the kernel held, then the end the server gave them
            answer, reset = read_to_end(sock)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert reset, "a client that stalled past the deadline was not cut"
            assert len(body_of(answer)) < len(result)
            assert result.startswith(body_of(answer))
        assert service.log().count("it took less than 64 KiB of its answer in 3 s") >= 20
    finally:
        for sock in stalled:
            sock.close()

    # Their threads (and connections) are free: 12 downloads at once, three times the threads, each whole.
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: server.request("GET", url, raw=True), range(12)))
    assert [(status, body == result) for status, _, body in answers] == [(200, True)] * 12


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("pause", [0.4 * WRITE_TIMEOUT, WRITE_TIMEOUT + 4], ids=["within-the-deadline", "past-it"])
def test_a_slow_reader_gets_every_byte_within_the_write_deadline_and_is_cut_past_it(readers, pause):
    """Within: 64 KiB taken every 0.4 deadlines, six times over, then the rest at once. Past: one pause longer
    than the deadline (and the loop's one-second check), then the rest at once."""
    service, url, result = readers
    with ask_and_stall(service.port, url, service.server.key) as sock:
        taken = b""
        for _ in range(6 if pause < WRITE_TIMEOUT else 1):
            time.sleep(pause)
            taken += read_exactly(sock, 64 * 1024)
        rest, reset = read_to_end(sock)
    body = body_of(taken + rest)
    if pause < WRITE_TIMEOUT:
        assert (reset, len(body), body == result) == (False, len(result), True)
    else:
        assert reset and len(body) < len(result) and result.startswith(body)


def test_clients_that_ask_to_close_then_neither_read_nor_close_do_not_stall_the_others(readers):
    """gthread closed such a connection with a blocking 2 s read on its event loop (RFC 9112's linger), one
    after the other: twenty of them stalled every connection for 40 s."""
    service, _, _ = readers
    stalled = [
        ask_and_stall(service.port, "/api/v1/ping", service.server.key, b"Connection: close\r\n") for _ in range(20)
    ]
    try:
        time.sleep(0.5)
        quick = type(service.server)(service.port, service.server.key, timeout=5)
        for _ in range(3):
            assert quick.request("GET", "/api/v1/ping")[::2] == (200, {"ok": True})
        for sock in stalled:  # each was answered, and closed after its linger
            answer, _ = read_to_end(sock)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"ok":true}\n'), answer
    finally:
        for sock in stalled:
            sock.close()


# --- a streamed answer, written by its thread (an event stream): the same deadline --------------------------


@pytest.fixture
def tcp_pair():
    """(server side, client side) of a loopback TCP connection with small buffers, as an attacker sets them."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    yield server, client
    server.close()
    client.close()


EVENT = b'event: progress\ndata: {"percent": 50, "status": "processing"}\n\n' * 40  # 2.6 KB


def test_a_stream_to_a_client_that_does_not_read_is_cut_by_its_thread_at_the_write_deadline(tcp_pair):
    """An event every 20 ms: past 64 KiB waiting they go to a temporary file, not memory; the first write after
    the deadline raises, which ends the stream (and frees its thread)."""
    server, _client = tcp_pair
    outbox = Outbox(server, Budget(1 << 30), per_connection=64 * 1024, timeout=1)
    started = time.monotonic()
    with pytest.raises(WriteTimeout):
        for _ in range(500):
            outbox.sendall(EVENT)
            assert outbox.held <= 64 * 1024
            time.sleep(0.02)
    assert outbox.cut and outbox.spilled > 0
    assert 1 <= time.monotonic() - started < 5
    outbox.discard()
    assert outbox.budget.used == 0 and outbox.spill is None


def test_a_stream_to_a_client_reading_fast_enough_is_not_cut(tcp_pair):
    """64 KiB a second is the floor at timeout=1; this client takes 32 KiB every 0.2 s."""
    server, client = tcp_pair
    outbox = Outbox(server, Budget(1 << 30), per_connection=64 * 1024, timeout=1)
    received = bytearray()
    stop = time.monotonic() + 60

    def read() -> None:
        client.settimeout(10)
        while len(received) < 200 * len(EVENT) and time.monotonic() < stop:
            time.sleep(0.2)
            received.extend(read_exactly(client, min(32 * 1024, 200 * len(EVENT) - len(received))))

    with ThreadPoolExecutor(1) as pool:
        reader = pool.submit(read)
        for _ in range(200):  # 520 KB
            outbox.sendall(EVENT)
        server.setblocking(False)
        while not outbox.drain():  # what the loop does once the thread is done
            select.select([], [server], [], 1)
            assert not outbox.expired(time.monotonic())
        reader.result()
    assert bytes(received) == EVENT * 200
    assert not outbox.cut and outbox.budget.used == 0


# --- the memory bound: past WRITE_BUFFER_MB / WRITE_BUFFER_TOTAL_MB, the rest waits on disk ------------------
# (On loopback the kernel takes a movie page of MAX_PAGE_KB at once, so the server never holds one: the bounds are
# shown on an outbox whose client does not read, with small socket buffers, as over a slow network.)


def stuck_outbox(tcp_pair, budget: Budget, per_connection: int) -> Outbox:
    server, _client = tcp_pair
    outbox = Outbox(server, budget, per_connection=per_connection, timeout=30)
    outbox.sendall(b"h" * (1 << 20))  # the socket buffers take part of it; the client reads nothing yet
    return outbox


def read_all_of(outbox: Outbox, client: socket.socket, n: int) -> bytes:
    """What the loop does once the thread is done, while the client reads `n` bytes."""
    outbox.sock.setblocking(False)
    received = bytearray()
    client.setblocking(False)
    while len(received) < n:
        outbox.drain()
        select.select([client], [], [], 0.05)
        try:
            received += client.recv(1 << 20)
        except BlockingIOError:
            pass
    assert outbox.drain()
    return bytes(received)


@pytest.mark.parametrize("per_connection", [(1 << 20) + 4096, 64 * 1024], ids=["within-WRITE_BUFFER", "past-it"])
def test_an_answer_past_the_connection_bound_waits_in_a_temporary_file_and_arrives_whole(tcp_pair, per_connection):
    budget = Budget(1 << 30)
    outbox = stuck_outbox(tcp_pair, budget, per_connection)
    outbox.sendall(b"t" * 4096)
    assert outbox.held <= per_connection and budget.used == outbox.held
    assert (outbox.spill is not None) == (per_connection < (1 << 20))
    assert read_all_of(outbox, tcp_pair[1], (1 << 20) + 4096) == b"h" * (1 << 20) + b"t" * 4096
    assert (outbox.held, budget.used, outbox.spill) == (0, 0, None)


def test_answers_past_the_process_bound_wait_in_temporary_files(tcp_pair):
    """Two connections share WRITE_BUFFER_TOTAL_MB: the first fills it, the second's rest goes to disk."""
    budget = Budget(1 << 20)
    first = stuck_outbox(tcp_pair, budget, per_connection=8 << 20)
    assert first.spill is None and 0 < budget.used <= 1 << 20
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        server, _ = listener.accept()
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        second = Outbox(server, budget, per_connection=8 << 20, timeout=30)
        second.sendall(b"s" * (1 << 20))
        assert second.spill is not None and second.held == 0 and budget.used <= 1 << 20
        assert read_all_of(second, client, 1 << 20) == b"s" * (1 << 20)
    first.discard()
    assert budget.used == 0


def test_sigterm_lets_an_answer_the_loop_is_sending_finish_within_the_grace(tmp_path):
    """The thread is long done; the loop, stopping, still sends the rest (gunicorn's 10 s grace) before exiting."""
    service, url, result = with_a_large_result(tmp_path)
    try:
        with ask_and_stall(service.port, url, service.server.key) as sock:
            time.sleep(0.5)  # the thread has handed the rest of the file to the loop
            taken = read_exactly(sock, 256 * 1024)
            os.killpg(service.proc.pid, signal.SIGTERM)
            while True:  # 256 KiB every 50 ms: the rest within some 2 s
                time.sleep(0.05)
                chunk = read_exactly(sock, 256 * 1024)
                taken += chunk
                if len(chunk) < 256 * 1024:
                    break
        assert body_of(taken) == result
        assert service.proc.wait(timeout=20) == 0
    finally:
        service.stop()
