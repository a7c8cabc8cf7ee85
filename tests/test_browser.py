"""The web page in a real browser: Debian's Chromium, driven by Playwright, against the real service.

Never `playwright install`: the browser is /usr/bin/chromium (`apt-get install chromium`; .ci/run does it).
Without it these tests skip with a message, except under CI (CI=true), where they fail. Each state the
tests reach is saved as a screenshot under test-output/browser/ (git-ignored).

Each page signs in as a person would: with the sign-in address the service printed (…/#key=<admin key>),
answering the page's question "Sign in with the key in this link?".
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from moviecat.generate import generate_movies
from tests.conftest import REPO
from tests.support.reference import load
from tests.support.service import Service
from tests.test_plays import EXAMPLE, EXAMPLE_RESULT

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # requirements-dev.txt has it; a bare environment may not
    sync_playwright = None

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "test-output" / "browser"
TIMEOUT_MS = 30_000
EXPECT_MS = 15_000  # for what waits on the worker or on the server's movie cache (5 s by default)
PHONE = {"width": 375, "height": 740}
NO_STREAMS = "delete window.ReadableStream;"  # a browser that cannot read a response as it arrives: it polls
STORED = "movie-ingest.session"  # the page's sessionStorage item
EXPIRED = "Your session has expired; sign in again."


def unavailable(why: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI runs the browser tests: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        unavailable("Playwright is not installed: pip install -r requirements-dev.txt")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y --no-install-recommends chromium")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # Small blocks and batches: the worker reports progress often enough for the page to show steps.
    # A short CACHE_TTL: a movie page cached empty by one test is gone by the next.
    running = Service(
        tmp_path_factory.mktemp("web"),
        SSE_POLL_MS="100",
        BLOCK_SIZE=str(64 * 1024),
        BATCH_SIZE="100",
        MAX_UPLOAD_MB="4",
        CACHE_TTL="1",
    )
    yield running.start()
    running.stop()


@pytest.fixture(scope="module")
def streamless_service(tmp_path_factory):
    """A service that refuses every progress stream (503), with the default 5 s movie cache."""
    running = Service(tmp_path_factory.mktemp("web-streamless"), SSE_MAX_STREAMS="0", CACHE_TTL="5")
    yield running.start()
    running.stop()


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory) -> tuple[Path, dict]:
    """A generated movies file (bad rows included) and what ingesting it must give."""
    path = tmp_path_factory.mktemp("data") / "movies.csv"
    generate_movies(str(path), rows=8_000, seed=21)
    return path, load(path)


@pytest.fixture(scope="module")
def movies_loaded(service, movie_file):
    """The movie file ingested (uploading it again through the page leaves the same documents)."""
    path, expected = movie_file
    status, _, body = service.upload(path, path.name)
    assert status == 202
    assert service.wait_for(body["task_id"])["status"] == "completed"
    return expected


def open_page(browser, service, request, viewport=None, init_script=None, before=None, key=None, role="admin"):
    """A new page on the service, signed in with its sign-in address as `role` (the page asks first: the test
    accepts); `before(page)` runs before it loads (to route requests, say). `key`: sign in with this key, not
    the service's admin key ("": do not); `role`: None, do not wait for the sign-in to succeed."""
    key = service.key if key is None else key
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)  # Playwright's actions; `expect` has its own timeout (EXPECT_MS)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    request.addfinalizer(context.close)
    request.addfinalizer(lambda: _no_script_errors(errors))
    if before:
        before(page)
    page.goto(service.url + "/" + (f"#key={key}" if key else ""))
    if key and service.key:  # with AUTH=false there is no key to offer, and the page asks nothing
        page.click("#address-key-accept")
    if key and role:
        signed_in(page, role)
    return page


def signed_in(page, role: str = "admin") -> None:
    expect(page.locator("body")).to_have_attribute("data-session", role)


def api_calls(page) -> list[dict]:
    """Every API request the page makes from now on: {method, url, authorization}."""
    calls: list[dict] = []

    def seen(req):
        if "/api/" in req.url:
            calls.append({"method": req.method, "url": req.url, "authorization": req.headers.get("authorization")})

    page.on("request", seen)
    return calls


def stored_session(page) -> dict | None:
    return page.evaluate(f"JSON.parse(sessionStorage.getItem('{STORED}'))")


def new_key(service, role: str, name: str) -> tuple[str, str]:
    """A new API key made with the admin key: (id, secret)."""
    status, _, body = service.request(
        "POST", "/api/v1/keys", json.dumps({"name": name, "role": role}), {"Content-Type": "application/json"}
    )
    assert status == 201, body
    return body["key"]["id"], body["secret"]


def _no_script_errors(errors):
    assert errors == [], f"the page's script failed: {errors}"


@pytest.fixture
def page(browser, service, request):
    return open_page(browser, service, request)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def record_progress(page) -> None:
    """Keep every state the job panel shows, [status, bar value, rows/s, time left], to check after the fact."""
    page.evaluate("""() => {
        window.trail = [];
        const job = document.getElementById('job'), bar = document.getElementById('job-bar');
        const text = id => document.getElementById(id).textContent;
        new MutationObserver(() => window.trail.push([job.dataset.status, bar.value, text('job-rate'),
                                                      text('job-eta')]))
            .observe(job, {attributes: true, subtree: true, childList: true, characterData: true,
                           attributeFilter: ['data-status', 'value']});
    }""")


def upload(page, path) -> None:
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-button")


def upload_named(page, name: str, data: bytes) -> None:
    """Upload `data` under a file name no file system may allow."""
    page.set_input_files("#upload-file", {"name": name, "mimeType": "text/csv", "buffer": data})
    page.click("#upload-button")


def isolated_text(locator) -> str:
    """The text of an element whose bidi is isolated from what is around it (a <bdi>, say)."""
    assert locator.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
    return locator.text_content()


def drop(page, path) -> None:
    """Drop a file on the drop zone, as dragging it there from the desktop does."""
    transfer = page.evaluate_handle(
        """([name, text]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([text], name, {type: 'text/csv'}));
        return transfer;
    }""",
        [path.name, path.read_text()],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def wait_until_finished(page) -> str:
    page.wait_for_selector('#job[data-status="completed"], #job[data-status="failed"]')
    return page.get_attribute("#job", "data-status")


def first_row(page) -> list[str]:
    return page.locator("#movies-body tr").first.locator("td").all_inner_texts()


def busiest(expected: dict) -> tuple[int, str, list[dict]]:
    """The (year, language) with the most movies, and its movies, best rated first (as the API sorts)."""
    groups: dict = {}
    for doc in expected["documents"].values():
        if doc["year"] is not None and doc["original_language"]:
            groups.setdefault((doc["year"], doc["original_language"]), []).append(doc)
    (year, language), docs = max(groups.items(), key=lambda item: (len(item[1]), item[0]))
    docs.sort(key=lambda d: (d["vote_average"] is not None, d["vote_average"] or 0, d["_id"]), reverse=True)
    return year, language, docs


# -- the tests ------------------------------------------------------------------------------------------


def test_movie_upload_shows_bytes_then_progress_to_completed(page, service, movie_file):
    path, expected = movie_file
    shot(page, "01-page")
    calls = api_calls(page)
    record_progress(page)
    upload(page, path)
    assert wait_until_finished(page) == "completed"
    expect(page.locator("#job-phase")).to_contain_text("Completed: movies.csv")
    shot(page, "02-movies-completed")

    trail = page.evaluate("window.trail")
    statuses = [status for status, *_ in trail]
    assert statuses[0] == "sending" and statuses[-1] == "completed", statuses
    sent = [value for status, value, *_ in trail if status == "sending"]
    worked = [value for status, value, *_ in trail if status in ("pending", "processing", "completed")]
    assert max(sent) == 100 and worked[-1] == 100, trail
    processing = [value for status, value, *_ in trail if status == "processing"]
    assert processing == sorted(processing), trail  # the bar never goes back while the worker runs
    # The worker's progress part way, with its rate and a time left that fits a job of about a second.
    midway = [(rate, eta) for status, value, rate, eta in trail if status == "processing" and 0 < value < 100]
    assert any(
        int(rate.replace(",", "")) > 0 and re.fullmatch(r"about \d+(\.\d)? s", eta)
        for rate, eta in midway
        if rate != "–"
    ), trail
    assert page.get_attribute("#job", "data-transport") == "events"
    # The progress came by the event stream, read by fetch() with the token in its header (not in its URL),
    # and not by polling the task's status.
    task_id = page.get_attribute("#job", "data-task-id")
    streams = [c for c in calls if c["url"].endswith(f"/api/v1/process/{task_id}/events")]
    token = stored_session(page)["token"]
    assert streams and all(c["authorization"] == f"Bearer {token}" for c in streams), calls
    assert not [c for c in calls if c["url"].endswith(f"/api/v1/process/{task_id}")], calls
    assert all(token not in c["url"] and service.key not in c["url"] for c in calls), calls
    assert page.eval_on_selector("#job-bar", "bar => bar.value") == 100
    assert page.inner_text("#job-percent") == "100.0 %"
    assert page.inner_text("#job-rows").startswith(f"{expected['rows_read']:,}")
    assert page.inner_text("#job-eta") == "none"

    # Rejected rows: as many as the worker kept, each with its line and reason.
    task_id = page.get_attribute("#job", "data-task-id")
    task = service.request("GET", f"/api/v1/process/{task_id}")[2]
    assert task["rows_rejected"] == len(expected["rejects"]) > 0
    rows = page.locator("#job-rejects-body tr")
    expect(rows).to_have_count(len(task["rejects"]))
    first = task["rejects"][0]
    assert rows.first.locator("td").all_inner_texts() == [f"{first['line']:,}", first["reason"]]
    expect(page.locator("#job-rejects-heading")).to_contain_text(f"Rejected rows: {task['rows_rejected']:,}")

    # The task list shows the finished task.
    row = page.locator(f'#tasks-body tr[data-task-id="{task_id}"]')
    expect(row.locator("td").first).to_have_text("completed")
    cells = row.locator("td").all_inner_texts()
    assert cells[1:3] == ["movies.csv", "movies"] and cells[4].startswith(f"{expected['rows_read']:,}")
    assert cells[5].endswith(" s")


def test_movie_table_filters_sorts_and_pages(page, movies_loaded):
    year, language, docs = busiest(movies_loaded)
    assert len(docs) > 10, "the generated file should give one (year, language) more than a page of movies"
    page.fill("#movie-year", str(year))
    page.fill("#movie-language", language)
    page.select_option("#movie-sort", "rating")
    page.select_option("#movie-order", "-1")
    page.click("#movie-filters button[type=submit]")
    pages = math.ceil(len(docs) / 10)
    expect(page.locator("#movies-page")).to_have_text(f"Page 1 of {pages}")
    expect(page.locator("#movies-total")).to_have_text(f"{len(docs):,} movies")
    assert first_row(page)[0] == docs[0]["title"]
    expect(page.locator("#movies-body tr")).to_have_count(10)
    assert page.get_attribute('#movies-table th[data-sort="rating"]', "aria-sort") == "descending"
    expect(page.locator("#movies-prev")).to_be_disabled()
    shot(page, "03-movies-filtered")

    page.click("#movies-next")
    expect(page.locator("#movies-page")).to_have_text(f"Page 2 of {pages}")
    assert first_row(page)[0] == docs[10]["title"]
    expect(page.locator("#movies-prev")).to_be_enabled()

    page.select_option("#movie-sort", "title")  # a new sort starts again at page 1
    page.select_option("#movie-order", "1")
    expect(page.locator("#movies-page")).to_have_text(f"Page 1 of {pages}")
    by_title = sorted(docs, key=lambda d: (d["title"], d["_id"]))
    expect(page.locator("#movies-body tr").first.locator("td").first).to_have_text(by_title[0]["title"])


def test_movie_table_empty_and_error_states(page, movies_loaded):
    page.fill("#movie-year", "1800")
    page.click("#movie-filters button[type=submit]")
    expect(page.locator("#movies-message")).to_have_text("No movies match these filters.")
    expect(page.locator("#movies-body tr")).to_have_count(0)
    expect(page.locator("#movies-total")).to_have_text("0 movies")
    shot(page, "04-movies-empty")

    page.fill("#movie-year", "abc")
    page.click("#movie-filters button[type=submit]")
    expect(page.locator("#movies-error")).to_have_text(
        "Could not load movies: Invalid 'year': must be an integer, got 'abc'"
    )
    expect(page.locator("#movies-next")).to_be_disabled()
    shot(page, "05-movies-error")


def test_plays_upload_offers_its_result_for_download(page, service, tmp_path):
    calls = api_calls(page)
    upload(page, EXAMPLE)
    assert wait_until_finished(page) == "completed"
    link = page.locator("#job-result-link")
    expect(link).to_be_visible()
    shot(page, "06-plays-completed")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "plays_example_input-totals.csv"
    saved = tmp_path / "totals.csv"
    download.save_as(saved)
    assert saved.read_bytes() == EXAMPLE_RESULT
    # Fetched with the token in its header, saved from a blob: URL; the token is in no URL.
    token = stored_session(page)["token"]
    fetched = [c for c in calls if c["url"].endswith("/result")]
    assert len(fetched) == 1 and fetched[0]["authorization"] == f"Bearer {token}", calls
    assert download.url.startswith("blob:") and token not in download.url
    assert all(token not in c["url"] and service.key not in c["url"] for c in calls), calls


def test_a_result_downloads_under_its_exact_unicode_name(page):
    """The name comes from Content-Disposition's filename*; its ASCII fallback would be 'donnees ete-totals.csv'."""
    upload_named(page, "données été.csv", EXAMPLE.read_bytes())
    assert wait_until_finished(page) == "completed"
    with page.expect_download() as info:
        page.click("#job-result-link")
    assert info.value.suggested_filename == "données été-totals.csv"


def test_a_dropped_file_uploads_and_without_streams_the_page_polls(browser, service, request):
    page = open_page(browser, service, request, init_script=NO_STREAMS)
    drop(page, EXAMPLE)
    expect(page.locator("#upload-chosen")).to_have_text("plays_example_input.csv, 202 B")
    page.click("#upload-button")
    assert wait_until_finished(page) == "completed"
    assert page.get_attribute("#job", "data-transport") == "polling"
    expect(page.locator("#job-result-link")).to_be_visible()


def test_refused_files_are_explained_next_to_the_file(page, tmp_path, movie_file):
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes\n")
    upload(page, notes)
    error = page.locator("#upload-error")
    expect(error).to_have_text("notes.txt was not accepted: Only .csv files are accepted, got 'notes.txt'.")
    expect(page.locator("#job")).to_be_hidden()
    shot(page, "07-not-a-csv")

    # A file refused while another job runs leaves that job in the panel, still watched to its end.
    upload(page, movie_file[0])
    page.wait_for_selector('#job[data-status="pending"], #job[data-status="processing"]')
    task_id = page.get_attribute("#job", "data-task-id")
    upload(page, notes)
    expect(error).to_contain_text("notes.txt was not accepted")
    expect(page.locator("#job")).to_be_visible()
    assert page.get_attribute("#job", "data-task-id") == task_id
    assert wait_until_finished(page) == "completed"
    expect(page.locator("#job-phase")).to_contain_text("Completed: movies.csv")

    bad = tmp_path / "bad.csv"
    bad.write_text("budget,overview\n1,x\n")
    upload(page, bad)
    expect(error).to_contain_text("bad.csv was not accepted: The header fits no job kind.")

    big = tmp_path / "big.csv"  # over the service's MAX_UPLOAD_MB of 4: refused before it is sent
    big.write_bytes(b"title\n" + b"x" * (5 << 20) + b"\n")
    upload(page, big)
    expect(error).to_have_text("big.csv was not accepted: The file is 5.0 MiB, over the limit of 4 MiB.")

    page.set_input_files("#upload-file", [])
    page.click("#upload-button")
    expect(error).to_have_text("Choose a CSV file first.")


def test_keyboard_alone_reaches_the_file_input_and_runs_the_movie_filters(page, movies_loaded):
    year, language, docs = busiest(movies_loaded)

    def tab_to(selector: str, limit: int = 25) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement === document.querySelector('{selector}')"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#upload-file")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    tab_to("#movie-year")
    page.keyboard.type(str(year))
    page.keyboard.press("Tab")
    page.keyboard.type(language)
    page.keyboard.press("Tab")  # the sort select: arrows change it, like a person would
    page.keyboard.press("ArrowDown")  # release date → rating
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # submits the filter form from the text field
    expect(page.locator("#movies-total")).to_have_text(f"{len(docs):,} movies")
    ascending = sorted(docs, key=lambda d: (d["vote_average"] is not None, d["vote_average"] or 0, d["_id"]))
    expect(page.locator("#movies-body tr").first.locator("td").first).to_have_text(ascending[0]["title"])

    tab_to("#movies-next")
    pages = math.ceil(len(docs) / 10)
    for number in range(2, pages + 1):
        page.keyboard.press("Enter")
        expect(page.locator("#movies-page")).to_have_text(f"Page {number} of {pages}")
    shot(page, "08-keyboard")
    # Next is disabled on the last page: the focus goes to Previous rather than back to the page's start.
    expect(page.locator("#movies-next")).to_be_disabled()
    assert page.evaluate("document.activeElement.id") == "movies-prev"
    page.keyboard.press("Enter")
    expect(page.locator("#movies-page")).to_have_text(f"Page {pages - 1} of {pages}")


def test_phone_width_layout_has_no_sideways_scroll(browser, service, request, movie_file, movies_loaded):
    page = open_page(browser, service, request, viewport=PHONE)
    upload(page, movie_file[0])  # the widest state: figures, rejects, tasks and movies all filled
    assert wait_until_finished(page) == "completed"
    expect(page.locator("#job-rejects")).to_be_visible()
    expect(page.locator("#movies-body tr").first).to_be_visible(timeout=EXPECT_MS)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= PHONE["width"] == widths[2], widths
    shot(page, "09-phone")


def test_pager_keeps_to_the_applied_filters(browser, service, request, movies_loaded):
    held = []  # the page's first movie request, held back to see what the page says meanwhile
    page = open_page(
        browser,
        service,
        request,
        before=lambda page: page.route(
            "**/api/v1/movies?*", lambda route: held.append(route) if not held else route.continue_()
        ),
    )
    expect(page.locator("#movies-page")).to_have_text("Loading…")
    expect(page.locator("#movies-next")).to_be_disabled()
    while not held:
        page.wait_for_timeout(50)
    held[0].continue_()

    pages = service.request("GET", "/api/v1/movies?limit=10")[2]["total_pages"]
    expect(page.locator("#movies-page")).to_have_text(f"Page 1 of {pages:,}")
    page.fill("#movie-year", "1800")  # typed, not applied: Next pages through what the table shows
    page.click("#movies-next")
    expect(page.locator("#movies-page")).to_have_text(f"Page 2 of {pages:,}")
    expect(page.locator("#movies-body tr")).to_have_count(10)

    page.click("#movie-filters button[type=submit]")
    expect(page.locator("#movies-message")).to_have_text("No movies match these filters.")
    expect(page.locator("#movies-page")).to_have_text("Page 1 of 1")
    expect(page.locator("#movies-prev")).to_be_disabled()
    expect(page.locator("#movies-next")).to_be_disabled()


# A plays file whose name and rejected row carry markup and a right-to-left override.
MARKUP = "<img src=x onerror=window.pwned=1>"
TRICKY_NAME = f"{MARKUP}sales\u202eq3.csv"
STORED_NAME = f"{MARKUP}salesq3.csv"  # the server removes bidi controls from names; the markup stays text
TRICKY_PLAYS = f"Song,Date,Number of Plays\nA,{MARKUP},3\nB,2020-01-01,4\n".encode()


def test_names_and_reasons_show_as_isolated_text(page, service):
    upload_named(page, TRICKY_NAME, TRICKY_PLAYS)
    assert isolated_text(page.locator("#upload-chosen bdi")) == TRICKY_NAME
    assert wait_until_finished(page) == "completed"
    task_id = page.get_attribute("#job", "data-task-id")
    task = service.request("GET", f"/api/v1/process/{task_id}")[2]
    assert MARKUP in task["rejects"][0]["reason"] and task["filename"] == STORED_NAME
    shot(page, "10-markup-and-bidi")

    phase = page.locator("#job-phase")
    expect(phase).to_contain_text(f"Completed: {TRICKY_NAME}, 2 rows in ")  # the page names the local file
    assert isolated_text(phase.locator("bdi")) == TRICKY_NAME  # the override stops at the name's end
    assert isolated_text(page.locator("#job-rejects-body td bdi")) == task["rejects"][0]["reason"]
    file_cell = page.locator(f'#tasks-body tr[data-task-id="{task_id}"] td.file bdi')
    expect(file_cell).to_have_count(1)
    assert isolated_text(file_cell) == STORED_NAME
    assert isolated_text(page.locator("#job-result-link bdi")) == TRICKY_NAME  # the page names the local file
    assert page.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_failed_task_says_why_and_a_listed_task_can_be_shown_again(page, tmp_path):
    upload(page, EXAMPLE)
    assert wait_until_finished(page) == "completed"
    example_id = page.get_attribute("#job", "data-task-id")

    overflow = tmp_path / "overflow.csv"  # the totals overflow: the worker fails the task
    overflow.write_text(f"Song,Date,Number of Plays\nA,2020-01-01,{2**62}\nA,2020-01-01,{2**62}\n")
    upload(page, overflow)
    assert wait_until_finished(page) == "failed"
    phase = page.locator("#job-phase")
    expect(phase).to_have_text(re.compile(r"^Failed: overflow\.csv: .*exceeds 9223372036854775807.*\.$"))
    expect(phase).to_have_class(re.compile(r"\berror\b"))
    failed_id = page.get_attribute("#job", "data-task-id")
    reason = page.locator(f'#tasks-body tr[data-task-id="{failed_id}"] td.status .reason')
    expect(reason).to_be_visible()
    expect(reason).to_contain_text("exceeds 9223372036854775807")
    shot(page, "11-failed")

    page.click(f'#tasks-body tr[data-task-id="{example_id}"] button')
    expect(page.locator("#job")).to_have_attribute("data-task-id", example_id)
    expect(phase).to_contain_text("Completed: plays_example_input.csv")
    expect(page.locator("#job-result-link")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "job-phase"


def test_refused_streams_fall_back_to_polling(browser, streamless_service, request, tmp_path):
    page = open_page(browser, streamless_service, request)
    # The empty catalogue, now in the server's cache for 5 s: after the upload the page must not call it empty.
    expect(page.locator("#movies-message")).to_have_text("No movies yet: upload a movies CSV above.")
    path = tmp_path / "few.csv"
    generate_movies(str(path), rows=30, seed=3)
    upload(page, path)
    assert wait_until_finished(page) == "completed"
    assert page.get_attribute("#job", "data-transport") == "polling"
    expect(page.locator("#movies-message")).to_have_text("Loading the new movies…")
    expect(page.locator("#movies-body tr").first).to_be_visible(timeout=EXPECT_MS)
    expect(page.locator("#movies-message")).to_have_text("")


def test_a_hung_status_request_is_abandoned_and_polling_recovers(browser, service, request):
    """Polling: the first status answer says processing, the second never comes, the third says processing
    again (the line must stop saying it lost touch), then the real service answers."""
    answers = {"count": 0}
    hung = []

    def status(route):
        answers["count"] += 1
        n = answers["count"]
        if n == 2:
            hung.append(route)  # never answered: only the page's own timeout ends it
            return
        if n > 3:
            route.continue_()
            return
        task_id = route.request.url.rsplit("/", 1)[1]
        route.fulfill(
            status=200,
            content_type="application/json",
            body=json.dumps(
                {
                    "task_id": task_id,
                    "status": "processing",
                    "kind": "plays",
                    "filename": EXAMPLE.name,
                    "percent": 10 * n,
                    "rows_read": n,
                    "rows_rejected": 0,
                    "rejects": [],
                    "rows_per_sec": 100,
                    "bytes_read": 20 * n,
                    "bytes_total": 202,
                }
            ),
        )

    def before(page):
        page.clock.install()  # timers still run, but the 10 s timeout can be skipped over
        page.route(re.compile(r".*/api/v1/process/[^/?]+$"), status)

    page = open_page(browser, service, request, init_script=NO_STREAMS, before=before)
    upload(page, EXAMPLE)
    phase = page.locator("#job-phase")
    expect(phase).to_have_text(f"Processing {EXAMPLE.name}…")
    while not hung:
        page.wait_for_timeout(50)
    page.clock.fast_forward(10_000)
    expect(phase).to_have_text("Lost touch with the task (The server did not answer within 10 s.); retrying…")
    expect(page.locator("#job-bar")).to_have_js_property("value", 30)
    expect(phase).to_have_text(f"Processing {EXAMPLE.name}…")
    assert wait_until_finished(page) == "completed"
    expect(phase).to_contain_text(f"Completed: {EXAMPLE.name}")


# -- signing in -----------------------------------------------------------------------------------------


def test_the_sign_in_address_signs_in_and_leaves_the_key_nowhere(browser, service, request):
    seen = {}
    page = open_page(browser, service, request, before=lambda page: seen.update(calls=api_calls(page)))
    calls = seen["calls"]
    expect(page.locator("#session-who")).to_have_text("Signed in as embedded admin (admin)")
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#upload")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_visible()
    shot(page, "12-signed-in")

    # The key left the address bar at once.
    assert page.url == service.url + "/"
    assert page.evaluate("location.hash") == ""
    # This tab's sessionStorage holds a token, and nothing else holds anything: no key, no cookie.
    assert page.evaluate("Object.keys(sessionStorage)") == [STORED]
    stored = stored_session(page)
    token = stored["token"]
    assert token.count(".") == 2 and token != service.key and stored["role"] == "admin"
    assert service.key not in page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    assert page.evaluate("[localStorage.length, document.cookie]") == [0, ""]
    assert service.request("GET", "/api/v1/processes?limit=1", key=token)[0] == 200
    expect(page.locator("#address-key")).to_be_hidden()  # asked once, answered
    # The key went only to the token exchange, in its header; every other call carried the token.
    assert [c["url"] for c in calls if c["authorization"] == f"Bearer {service.key}"] == [
        service.url + "/api/v1/auth/token"
    ]
    assert all(c["authorization"] == f"Bearer {token}" for c in calls if not c["url"].endswith("/auth/token"))
    assert all(token not in c["url"] and service.key not in c["url"] for c in calls), calls

    # A reload keeps the session (the tab still holds its token): no sign-in form, no new exchange.
    mark = len(calls)
    page.reload()
    expect(page.locator("#session-who")).to_have_text("Signed in as embedded admin (admin)")
    expect(page.locator("#movies-total")).not_to_have_text("")
    assert not [c for c in calls[mark:] if c["url"].endswith("/auth/token")]

    # The keyed address was replaced in this tab's history, not kept behind the page: Back leaves the page.
    page.go_back()
    assert page.url == "about:blank"


def key_offered(page, key_id: str, secret: str) -> None:
    """The page asks before signing in with the key in its address, naming it without showing its secret."""
    offer = page.locator("#address-key")
    expect(offer).to_be_visible()
    expect(page.locator("#address-key-which")).to_contain_text(f"API key {key_id} ({secret[:25]}…)")
    assert secret not in page.evaluate("document.documentElement.outerHTML")
    assert page.evaluate("location.hash") == ""  # the fragment left the address bar before the question


def own_task(service, page, path, secret: str, other: str) -> str:
    """Upload `path` through the page; its task is `secret`'s (visible to it), not `other`'s (404 to it)."""
    upload(page, path)
    assert wait_until_finished(page) == "completed"
    task_id = page.get_attribute("#job", "data-task-id")
    assert service.request("GET", f"/api/v1/process/{task_id}", key=secret)[0] == 200
    assert service.request("GET", f"/api/v1/process/{task_id}", key=other)[0] == 404
    return task_id


def test_a_link_with_someone_elses_key_asks_first_and_refusing_keeps_the_session(browser, service, request):
    """Issue 23, #2: signed in as A, she follows a link to `/#key=<B's secret>` (from another site: a new
    load of the page in her tab, which keeps her session). Nothing changes until she answers."""
    _, a_secret = new_key(service, "uploader", "alice")
    b_id, b_secret = new_key(service, "uploader", "mallory")
    page = open_page(browser, service, request, key=a_secret, role="uploader")
    calls = api_calls(page)
    page.goto("about:blank")
    page.goto(f"{service.url}/#key={b_secret}")
    key_offered(page, b_id, b_secret)
    expect(page.locator("#address-key-which")).to_contain_text("You are signed in as alice (uploader)")
    refuse = page.locator("#address-key-refuse")
    expect(refuse).to_have_text("Stay signed in as alice")
    assert page.evaluate("document.activeElement.id") == "address-key-refuse"  # Enter keeps the session
    expect(page.locator("#session-who")).to_have_text("Signed in as alice (uploader)")  # meanwhile: still A
    shot(page, "18-key-in-link-asked")

    refuse.click()
    expect(page.locator("#address-key")).to_be_hidden()
    expect(page.locator("#session-who")).to_have_text("Signed in as alice (uploader)")
    assert page.url == service.url + "/"
    assert not [c for c in calls if c["url"].endswith("/auth/token")], calls  # B's key was never sent
    assert all(c["authorization"] != f"Bearer {b_secret}" for c in calls)
    own_task(service, page, EXAMPLE, a_secret, b_secret)  # her next upload is hers

    # The same link opened over the page (only the fragment changes): asked again; accepting switches to B.
    page.evaluate(f"location.hash = '#key={b_secret}'")
    key_offered(page, b_id, b_secret)
    page.click("#address-key-accept")
    expect(page.locator("#session-who")).to_have_text("Signed in as mallory (uploader)")
    assert page.evaluate("location.hash") == ""
    assert page.evaluate("JSON.stringify(sessionStorage)").count(b_secret) == 0
    own_task(service, page, EXAMPLE, b_secret, a_secret)


def test_a_sign_in_address_in_a_new_tab_asks_too(browser, service, request):
    """No session to lose, but a link from another site opens a tab like this one: asked all the same."""
    key_id, secret = new_key(service, "uploader", "new tab")
    page = open_page(browser, service, request, key="", role=None)
    calls = api_calls(page)
    page.goto(f"{service.url}/#key={secret}")
    key_offered(page, key_id, secret)
    refuse = page.locator("#address-key-refuse")
    expect(refuse).to_have_text("Do not sign in")
    refuse.click()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#address-key")).to_be_hidden()
    assert page.evaluate("[document.activeElement.id, sessionStorage.length]") == ["sign-in-key", 0]
    assert page.url == service.url + "/"
    assert not [c for c in calls if "/api/" in c["url"]], calls  # nothing sent, signed out


def test_sign_out_forgets_the_token_and_sends_it_no_more(page, service):
    calls = api_calls(page)
    old = stored_session(page)["token"]
    expect(page.locator("#movies-total")).not_to_have_text("")
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in-notice")).to_have_text("You have signed out.")
    for section in ("#upload", "#tasks", "#movies", "#session"):
        expect(page.locator(section)).to_be_hidden()
    expect(page.locator("#tasks-body tr")).to_have_count(0)
    assert page.evaluate("sessionStorage.length") == 0
    assert page.evaluate("document.activeElement.id") == "sign-in-key"
    shot(page, "13-signed-out")

    mark = len(calls)
    page.wait_for_timeout(3_500)  # longer than the task list's refresh: nothing is asked, signed out
    assert calls[mark:] == []

    # Signing in again through the form: new calls carry a new token, never the old one.
    key = page.locator("#sign-in-key")
    assert key.get_attribute("type") == "password" and key.get_attribute("autocomplete") == "off"
    key.fill(service.key)
    key.press("Enter")
    signed_in(page)
    expect(key).to_have_value("")  # the key is not kept, not even in the form
    new = stored_session(page)["token"]
    assert new != old
    expect(page.locator("#tasks-body tr").first).to_be_visible()
    after = calls[mark:]
    assert after and all(c["authorization"] != f"Bearer {old}" for c in after), after
    assert page.evaluate("document.activeElement.id") == "upload-file"


def test_a_wrong_key_shows_the_apis_message(browser, service, request):
    wrong = "mcat_" + "x" * 43
    page = open_page(browser, service, request, key=wrong, role=None)
    error = page.locator("#sign-in-error")
    expect(error).to_have_text("Could not sign in: This API key is unknown or revoked.")
    assert page.url == service.url + "/"  # a wrong key leaves the address bar too
    expect(page.locator("#upload")).to_be_hidden()
    expect(page.locator("#movies")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "14-wrong-key")

    page.click("#sign-in-button")
    expect(error).to_have_text("Paste an API key first.")
    page.fill("#sign-in-key", "eyJhbGciOiJub25lIn0.e30.")  # not a key: what the API says of it is shown
    page.click("#sign-in-button")
    expect(error).to_have_text("Could not sign in: The token is not valid.")
    page.fill("#sign-in-key", service.key)
    page.click("#sign-in-button")
    signed_in(page)
    expect(error).to_be_hidden()


def test_a_tampered_token_ends_the_session(page):
    page.evaluate(f"""() => {{
        const s = JSON.parse(sessionStorage.getItem('{STORED}'));
        const [head, claims] = s.token.split('.');
        s.token = [head, claims, 'A'.repeat(43)].join('.');  // a signature that is not the server's
        sessionStorage.setItem('{STORED}', JSON.stringify(s));
    }}""")
    page.reload()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in-notice")).to_have_text(f"{EXPIRED} The server said: The token is not valid.")
    expect(page.locator("#movies")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_revoked_key_ends_the_session_and_keeps_what_was_typed(browser, service, request, movies_loaded):
    key_id, secret = new_key(service, "uploader", "revoked uploader")
    page = open_page(browser, service, request, key=secret, role="uploader")
    expect(page.locator("#session-who")).to_have_text("Signed in as revoked uploader (uploader)")
    page.fill("#movie-year", "1999")  # typed, not applied
    page.set_input_files("#upload-file", str(EXAMPLE))
    calls = api_calls(page)

    status, _, body = service.request("DELETE", f"/api/v1/keys/{key_id}")
    assert status == 200 and body["key"]["revoked_at"]
    # The task list's next refresh is answered 401: the page signs out and says why.
    notice = page.locator("#sign-in-notice")
    expect(notice).to_have_text(
        f"{EXPIRED} The server said: The key this token was issued for has been revoked.", timeout=EXPECT_MS
    )
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#upload")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "15-session-expired")
    mark = len(calls)
    page.wait_for_timeout(3_500)
    assert calls[mark:] == []  # nothing more is sent with the dead token

    page.fill("#sign-in-key", service.key)  # someone else signs in: what was typed is still there
    page.press("#sign-in-key", "Enter")
    signed_in(page)
    expect(page.locator("#movie-year")).to_have_value("1999")
    assert page.eval_on_selector("#upload-file", "input => input.files[0].name") == EXAMPLE.name
    expect(page.locator("#upload-chosen")).to_have_text("plays_example_input.csv, 202 B")


def test_a_reader_sees_the_catalogue_and_no_upload(browser, service, request, movies_loaded):
    _, secret = new_key(service, "reader", "catalogue reader")
    answers = []
    page = open_page(
        browser,
        service,
        request,
        key=secret,
        role="reader",
        before=lambda page: page.on("response", lambda r: answers.append((r.status, r.url))),
    )
    expect(page.locator("#session-who")).to_have_text("Signed in as catalogue reader (reader)")
    expect(page.locator("#movies-body tr").first).to_be_visible()
    expect(page.locator("#reader-note")).to_be_visible()
    for hidden in ("#upload", "#tasks", '#sections a[href="#upload"]', '#sections a[href="#tasks"]'):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator('#sections a[href="#movies"]')).to_be_visible()
    page.wait_for_timeout(3_500)  # the task list's refresh would have run by now
    assert not [url for _, url in answers if "/api/v1/process" in url], answers
    assert not [a for a in answers if a[0] >= 400], answers
    shot(page, "16-reader")


def test_signed_in_on_a_phone(browser, service, request):
    page = open_page(browser, service, request, viewport=PHONE)
    expect(page.locator("#sign-out")).to_be_visible()
    widths = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= PHONE["width"] == widths[2], widths
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    widths = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= PHONE["width"] == widths[2], widths
    shot(page, "17-phone-sign-in")


def test_with_auth_off_the_page_needs_no_sign_in(browser, tmp_path_factory, request):
    running = Service(tmp_path_factory.mktemp("web-open"), AUTH="false", WORKERS="0")
    server = running.start()
    request.addfinalizer(running.stop)
    assert server.key is None  # nothing to sign in with, and nothing printed
    page = open_page(browser, server, request)
    calls = api_calls(page)
    expect(page.locator("body")).to_have_attribute("data-session", "admin")
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#session")).to_be_hidden()
    expect(page.locator("#upload")).to_be_visible()
    expect(page.locator("#movies-message")).to_have_text("No movies yet: upload a movies CSV above.")
    page.click("#tasks-refresh")
    expect(page.locator("#tasks-message")).to_have_text("No tasks yet: upload a file above.")
    assert calls and all(c["authorization"] is None for c in calls), calls
    assert page.evaluate("sessionStorage.length") == 0


# -- the event stream, read by fetch() ----------------------------------------------------------------------


def fake_record(task_id: str, status: str, percent: float) -> dict:
    return {
        "task_id": task_id,
        "status": status,
        "kind": "plays",
        "filename": EXAMPLE.name,
        "percent": percent,
        "rows_read": 7 if status == "completed" else 3,
        "rows_rejected": 0,
        "rejects": [],
        "rows_per_sec": 100,
        "bytes_read": 202 if status == "completed" else 80,
        "bytes_total": 202,
        "duration_s": 0.2,
        "result_url": f"/api/v1/process/{task_id}/result",
    }


def test_the_stream_reader_reads_the_format_and_reconnects_as_event_source_does(browser, service, request):
    """The first stream (served by the test) has CRLF lines, a comment, a retry, an event over several data
    lines and an unfinished one, then closes: the page opens it again after the retry delay, and the second
    stream ends the task."""
    opened = []

    def events(route):
        opened.append(route.request.headers.get("authorization"))
        task_id = route.request.url.rsplit("/", 2)[1]
        if len(opened) == 1:
            lines = json.dumps(fake_record(task_id, "processing", 40), indent=1).splitlines()
            body = (
                "retry: 50\r\n\r\n: keep-alive\r\nevent: progress\r\n"
                + "".join(f"data: {x}\r\n" for x in lines)
                + '\r\nevent: progress\r\ndata: {"not ended by a blank line\r\n'
            )
        else:
            body = (
                f"event: progress\ndata:{json.dumps(fake_record(task_id, 'completed', 100))}\n\n"
                f"event: end\ndata: {{}}\n\n"
            )
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}, body=body)

    page = open_page(browser, service, request, before=lambda page: page.route("**/api/v1/process/*/events", events))
    calls = api_calls(page)
    record_progress(page)
    upload(page, EXAMPLE)
    assert wait_until_finished(page) == "completed"
    trail = page.evaluate("window.trail")
    assert ["processing", 40] in [entry[:2] for entry in trail], trail
    assert page.get_attribute("#job", "data-transport") == "events"
    token = stored_session(page)["token"]
    assert opened == [f"Bearer {token}"] * 2
    assert not [c for c in calls if re.search(r"/api/v1/process/[^/]+$", c["url"])], calls  # no polling


def test_streams_that_keep_failing_give_way_to_polling(browser, service, request):
    opened = []

    def events(route):  # each stream closes at once, without an event: STREAM_FAILURES of them, then polling
        opened.append(route.request.url)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body="retry: 20\n\n")

    page = open_page(browser, service, request, before=lambda page: page.route("**/api/v1/process/*/events", events))
    upload(page, EXAMPLE)
    assert wait_until_finished(page) == "completed"
    assert page.get_attribute("#job", "data-transport") == "polling"
    assert len(opened) == 3  # STREAM_FAILURES in progress.js
