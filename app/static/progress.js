// The upload panel: the bytes of a file being sent, then the progress of the task being watched (Server-
// Sent Events, or polling), its rejected rows and its result download. Its state (the watched task, and
// whether a file is being sent) lives here; upload.js and tasks.js hand it files and tasks to show.

import { attachmentName, errorText, readEvents, FETCH_TIMEOUT_MS, UNREACHABLE } from './api.js';
import { $, cell, say, show, theirs } from './dom.js';
import { bytes, count, percent, seconds } from './format.js';

const POLL_MS = 1000; // a task's status, when event streams are unavailable
const STREAM_FAILURES = 3; // errors in a row before an event stream is given up for polling
const ACTIVE = { pending: true, processing: true };

// A body read as it arrives is what an event stream needs; a browser without it polls.
function canStream() {
  return (
    typeof window.ReadableStream === 'function' &&
    typeof window.TextDecoder === 'function' &&
    typeof window.Response === 'function' &&
    'body' in window.Response.prototype
  );
}

function describe(task, filename) {
  const name = theirs(filename);
  switch (task.status) {
    case 'pending':
      return ['Sent ', name, '; waiting for a worker…'];
    case 'processing':
      return ['Processing ', name, '…'];
    case 'completed':
      return [
        'Completed: ',
        name,
        ', ' +
          count(task.rows_read) +
          ' rows in ' +
          seconds(task.duration_s) +
          (task.rows_rejected ? ', ' + count(task.rows_rejected) + ' rejected' : '') +
          '.',
      ];
    case 'failed':
      return ['Failed: ', name, ': ', theirs(task.error || 'no reason was recorded'), '.'];
    case 'cancelled':
      return ['Cancelled: ', name, ' was stopped after ' + count(task.rows_read) + ' rows.'];
    default:
      return String(task.status);
  }
}

// From the worker's own rate, so it does not depend on this computer's clock agreeing with the server's.
function timeLeft(task) {
  if (!task.rows_per_sec || !task.rows_read || !task.bytes_read || !task.bytes_total) return '–';
  const bytesPerSecond = (task.rows_per_sec * task.bytes_read) / task.rows_read;
  return 'about ' + seconds(Math.max(0, task.bytes_total - task.bytes_read) / bytesPerSecond);
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const anchor = document.createElement('a');
  anchor.href = url;
  anchor.download = name;
  anchor.hidden = true;
  document.body.appendChild(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000); // once the browser surely has it
}

// `api`: send and getJSON (api.js); `session`: current() (session.js); `hooks`: changed() when the watched
// task's status changes (the task list is then out of date), moviesAdded() when a movies file uploaded here
// completed (the catalogue is).
export function createProgress({ authOn, api, session, hooks }) {
  const panel = $('job');
  const phase = $('job-phase');
  const bar = $('job-bar');
  const resultLink = $('job-result-link');
  const resultError = $('job-result-error');
  // The task being watched: {id, filename, uploaded, transport, source, timer, done, task, run, interrupted}.
  // `run` counts the times it was (re)started; `interrupted`: its session ended before it did.
  let job = null;
  let sending = false; // an upload is on its way: the panel shows its bytes, not the watched task

  function stopWatching() {
    if (!job) return;
    job.done = true;
    if (job.source) job.source.abort();
    job.source = null;
    clearTimeout(job.timer);
  }

  function resetFigures() {
    ['job-rows', 'job-percent', 'job-rate', 'job-eta'].forEach((id) => {
      $(id).textContent = '–';
    });
    $('job-result').hidden = true;
    $('job-rejects').hidden = true;
    $('job-rejects-body').textContent = '';
    phase.classList.remove('error');
  }

  // -- a file being sent (upload.js) --------------------------------------------------------------------
  // The task being watched keeps being watched meanwhile: only an accepted upload replaces it, and a
  // refused one gives the panel back to it.
  function sendingFile(filename) {
    sending = true;
    panel.hidden = false;
    panel.dataset.status = 'sending';
    panel.dataset.transport = '';
    resetFigures();
    $('job-rows-label').textContent = 'Sent';
    say(phase, ['Sending ', theirs(filename), '…']);
    bar.value = 0;
  }

  function sent(loaded, total) {
    const share = total ? (loaded / total) * 100 : 100;
    bar.value = share;
    $('job-percent').textContent = percent(share);
    $('job-rows').textContent = bytes(loaded) + ' of ' + bytes(total);
  }

  // The answer came: the panel is the watched task's again, accepted() for the one just sent, refused()
  // for the one it watched before.
  function sendingEnded() {
    sending = false;
  }

  function accepted(taskId, filename) {
    stopWatching();
    watch(taskId, filename, true);
  }

  function refused() {
    showJob();
  }

  // -- the watched task ---------------------------------------------------------------------------------
  // The panel as the watched task last left it (after an upload was refused, say), or hidden if none.
  function showJob() {
    if (!job) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    panel.dataset.taskId = job.id;
    panel.dataset.transport = job.transport;
    resetFigures();
    $('job-rows-label').textContent = 'Rows';
    job.rejectsShown = '';
    if (job.task) {
      render(job, true);
    } else {
      panel.dataset.status = 'pending';
      bar.value = 0;
      say(
        phase,
        job.uploaded
          ? ['Sent ', theirs(job.filename), '; waiting for a worker…']
          : ['Looking up ', theirs(job.filename), '…'],
      );
    }
  }

  // `uploaded`: sent from this page just now (rather than opened from the task list).
  function watch(taskId, filename, uploaded) {
    job = {
      id: taskId,
      filename,
      uploaded,
      transport: '',
      source: null,
      timer: null,
      done: false,
      task: null,
      rejectsShown: '',
      lostTouch: false,
      run: 0,
      interrupted: false,
    };
    showJob();
    follow(job);
  }

  // Watch (or, after a new sign-in, watch again) a task; signed out, it waits for the next sign-in.
  function follow(watched) {
    watched.run += 1;
    watched.done = false;
    watched.interrupted = false;
    if (authOn && !session.current()) {
      watched.done = true;
      watched.interrupted = true;
      return;
    }
    if (canStream()) stream(watched);
    else poll(watched);
  }

  function setTransport(watched, transport) {
    watched.transport = transport;
    if (watched === job && !sending) panel.dataset.transport = transport;
  }

  // Server-Sent Events (one event per change of the task), read from a fetch() so that the request carries
  // the token: EventSource cannot send a header, and a token in the URL would reach access logs. It behaves
  // as EventSource does: a stream the server ends (it closes long ones on purpose), or one cut off, is opened
  // again after the server's `retry:` delay, and an answer that is no stream (503 when the server has too many
  // open, say) is given up at once. Then, or after STREAM_FAILURES errors in a row, the page polls instead.
  function stream(watched) {
    setTransport(watched, 'events');
    const run = watched.run;
    const url = '/api/v1/process/' + encodeURIComponent(watched.id) + '/events';
    let failures = 0;
    let retryMs = 3000; // until the server says otherwise, as EventSource's default
    const stale = () => watched.done || watched.run !== run;

    function failed(fatal) {
      if (stale()) return;
      watched.source = null;
      failures += 1;
      if (fatal || failures >= STREAM_FAILURES) poll(watched);
      else watched.timer = setTimeout(connect, retryMs);
    }

    function connect() {
      if (stale()) return;
      const controller = new AbortController();
      let ended = false;
      // Only the answer's headers must come in time; the stream itself may stay open for minutes.
      const opening = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
      watched.source = controller;
      api
        .send(url, { headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: controller.signal })
        .then((response) => {
          clearTimeout(opening);
          const type = (response.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
          if (!response.ok || type !== 'text/event-stream' || !response.body) {
            controller.abort();
            failed(true);
            return;
          }
          return readEvents(
            response.body.getReader(),
            (event, data) => {
              if (stale()) return;
              if (event === 'progress') {
                failures = 0;
                update(watched, JSON.parse(data));
              } else if (event === 'end') {
                ended = true;
              }
            },
            (ms) => {
              retryMs = ms;
            },
          ).then(() => {
            if (stale()) return;
            // Ended, yet the last progress did not say so: ask once more.
            if (ended) poll(watched);
            else failed(false);
          });
        })
        .catch(() => {
          clearTimeout(opening);
          controller.abort(); // whatever is left of this stream
          failed(false); // cut off, unreachable, or signed out (then stale: the next sign-in follows it again)
        });
    }
    connect();
  }

  function poll(watched) {
    setTransport(watched, 'polling');
    const run = watched.run;
    const stale = () => watched.done || watched.run !== run;
    function tick() {
      if (stale()) return;
      api
        .getJSON('/api/v1/process/' + encodeURIComponent(watched.id))
        .then(
          (task) => {
            if (!stale()) update(watched, task);
          },
          (err) => {
            if (stale() || err.signedOut) return;
            watched.lostTouch = true; // the next answer rewrites the line, changed status or not
            if (watched === job && !sending) {
              say(phase, ['Lost touch with the task (', theirs(err.message), '); retrying…']);
            }
          },
        )
        .then(() => {
          if (!stale()) watched.timer = setTimeout(tick, POLL_MS);
        });
    }
    tick();
  }

  function update(watched, task) {
    if (watched !== job || watched.done) return;
    const changed = !watched.task || task.status !== watched.task.status;
    watched.task = task;
    // The live region speaks only when the status changes, or to take back "Lost touch".
    if (!sending) render(watched, changed || watched.lostTouch);
    watched.lostTouch = false;
    if (changed) hooks.changed();
    if (!ACTIVE[task.status]) {
      stopWatching();
      if (watched.uploaded && task.status === 'completed' && task.kind === 'movies') hooks.moviesAdded();
    }
  }

  function render(watched, speak) {
    const task = watched.task;
    const status = task.status;
    panel.dataset.status = status;
    $('job-rows-label').textContent = 'Rows';
    bar.value = task.percent || 0;
    $('job-percent').textContent = percent(task.percent);
    $('job-rows').textContent =
      count(task.rows_read) + (task.rows_rejected ? ' (' + count(task.rows_rejected) + ' rejected)' : '');
    $('job-rate').textContent = task.rows_per_sec ? count(task.rows_per_sec) : '–';
    $('job-eta').textContent = status === 'processing' ? timeLeft(task) : ACTIVE[status] ? '–' : 'none';
    showRejects(watched, task);
    if (speak) {
      say(phase, describe(task, watched.filename));
      phase.classList.toggle('error', status === 'failed');
    }
    // Only a path of this API: "//elsewhere/x" is a link to another host.
    const result =
      status === 'completed' && typeof task.result_url === 'string' && task.result_url.indexOf('/api/') === 0;
    if (result) {
      if (resultLink.dataset.url !== task.result_url) show(resultError, ''); // another task's failed download
      resultLink.dataset.url = task.result_url;
      say(resultLink, ['Download the totals of ', theirs(watched.filename)]);
    }
    $('job-result').hidden = !result;
    if (!result) show(resultError, '');
  }

  function showRejects(watched, task) {
    const rejects = task.rejects || [];
    const last = rejects[rejects.length - 1];
    const shown = rejects.length + ':' + (last ? last.line : ''); // rebuilt only when the kept list changed
    if (shown !== watched.rejectsShown) {
      watched.rejectsShown = shown;
      const tbody = $('job-rejects-body');
      tbody.textContent = '';
      rejects.forEach((reject) => {
        const row = document.createElement('tr');
        cell(row, count(reject.line), 'num');
        cell(row, theirs(reject.reason));
        tbody.appendChild(row);
      });
    }
    let heading = 'Rejected rows: ' + count(task.rows_rejected);
    if (task.rows_rejected > rejects.length) heading += ' (the first ' + count(rejects.length) + ' are listed)';
    $('job-rejects-heading').textContent = heading;
    $('job-rejects').hidden = rejects.length === 0;
  }

  // -- the result download ----------------------------------------------------------------------------
  // Not a plain link: the request must carry the token, and a token in the URL would reach access logs. The
  // file is fetched with it, then saved from a Blob's object URL under the name the server gave it.
  resultLink.addEventListener('click', () => {
    const url = resultLink.dataset.url;
    if (!url || resultLink.getAttribute('aria-busy') === 'true') return;
    resultLink.setAttribute('aria-busy', 'true'); // not `disabled`: that would drop the keyboard focus
    show(resultError, '');
    api
      .send(url, { headers: { Accept: 'text/csv' }, cache: 'no-store' })
      .then((response) => {
        if (!response.ok) {
          return response.text().then((text) => {
            throw new Error(errorText(response.status, text));
          });
        }
        const name = attachmentName(response.headers.get('Content-Disposition')) || 'totals.csv';
        return response.blob().then((blob) => save(blob, name));
      })
      .catch((err) => {
        if (err.signedOut) return;
        show(resultError, ['The download failed: ', theirs(err instanceof TypeError ? UNREACHABLE : err.message)]);
      })
      .finally(() => resultLink.removeAttribute('aria-busy'));
  });

  // -- the session's changes (main.js) ------------------------------------------------------------------
  // Signed out: the task stops being watched, and is watched again if the same person signs in again.
  function interrupt() {
    if (job && !job.done) job.interrupted = true;
    stopWatching();
  }

  function resume() {
    if (job && job.interrupted) follow(job);
  }

  // Another person: their task leaves the panel.
  function forget() {
    stopWatching();
    job = null;
    panel.hidden = true;
  }

  // A task from the list back in the panel, with its progress and rejected rows.
  function open(taskId, filename) {
    stopWatching();
    watch(taskId, filename, false);
    phase.focus();
  }

  return {
    sendingFile,
    sent,
    sendingEnded,
    accepted,
    refused,
    interrupt,
    resume,
    forget,
    open,
    isSending: () => sending,
  };
}
