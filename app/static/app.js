// The content team's page: sign-in, upload with live progress, recent tasks, the movie catalogue.
// Plain browser JavaScript, no build step. Everything from the server is put in the page with
// textContent (never innerHTML), so a title or a file name can never become markup.
(function () {
  'use strict';

  // A sign-in address (…/#key=<API key>) leaves the address bar before anything else happens, so the key is
  // not left on the screen or in this tab's history. A fragment is never sent to a server, so it reached no
  // access log either. The page then asks before signing in with it (offerKey, below).
  var addressKey = takeKeyFromAddress();

  function takeKeyFromAddress() {
    var key = new URLSearchParams(location.hash.slice(1)).get('key');
    if (key === null) return null;
    history.replaceState(history.state, '', location.pathname + location.search);
    return key.trim();
  }

  var POLL_MS = 1000; // a task's status, when event streams are unavailable
  var TASKS_EVERY_MS = 3000; // the recent-tasks table
  var STREAM_FAILURES = 3; // errors in a row before an event stream is given up for polling
  var FETCH_TIMEOUT_MS = 10000; // a request that hangs longer is abandoned, so polling and reloads go on
  var ACTIVE = { pending: true, processing: true };
  var RANK = { reader: 0, uploader: 1, admin: 2 }; // each role may do what the one before may, and more
  var STORED = 'movie-ingest.session'; // the sessionStorage item: {token, name, role, expires}
  var EXPIRED = 'Your session has expired; sign in again.';
  var SHOWN_CHARS = 25; // of a key shown: `mcat_`, its id and 4 more, as the API lists a key's `prefix`

  var body = document.body;
  var maxUploadMb = Number(body.dataset.maxUploadMb) || 0;
  var cacheTtl = Number(body.dataset.cacheTtl) || 5;
  var authOn = body.dataset.auth !== 'off'; // AUTH=false: the API asks for no credentials, nor does the page

  function $(id) { return document.getElementById(id); }

  // Text that came from a person (a file name, a title, a reason), isolated in a <bdi>: a right-to-left
  // override in a file name then cannot reorder the sentence or the cells around it.
  function theirs(text) {
    var bdi = document.createElement('bdi');
    bdi.textContent = text == null ? '' : String(text);
    return bdi;
  }

  // Fill an element with a sentence: strings are our words, nodes (from theirs()) are put in as they are.
  function say(element, parts) {
    element.textContent = '';
    (Array.isArray(parts) ? parts : [parts || '']).forEach(function (part) {
      element.appendChild(typeof part === 'string' ? document.createTextNode(part) : part);
    });
  }

  function cell(row, parts, className) {
    var td = document.createElement('td');
    say(td, parts);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function show(element, parts) {
    say(element, parts);
    element.hidden = !element.textContent;
  }

  // -- formatting -----------------------------------------------------------------------------------
  var integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  var oneDecimal = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function count(n) { return typeof n === 'number' ? integer.format(n) : '–'; }

  function bytes(n) {
    if (typeof n !== 'number') return '–';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? integer.format(n) : oneDecimal.format(n)) + ' ' + units[i];
  }

  function seconds(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '–';
    if (s < 10) return oneDecimal.format(s) + ' s';
    if (s < 90) return integer.format(s) + ' s';
    if (s < 5400) return integer.format(s / 60) + ' min';
    return oneDecimal.format(s / 3600) + ' h';
  }

  function when(iso) {
    if (!iso) return '–';
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  // -- the API ----------------------------------------------------------------------------------------
  // The message of an error answer ({"error": {"code", "message"}}), or words for one without a body.
  function errorText(status, text) {
    try {
      var parsed = JSON.parse(text);
      if (parsed && parsed.error && parsed.error.message) return parsed.error.message;
    } catch (ignored) { /* not JSON: a proxy's page, say */ }
    if (status === 413) return 'The file is too large for the server.';
    return 'The server answered ' + status + ' without an explanation.';
  }

  // -- the session ----------------------------------------------------------------------------------
  // The page holds a token from POST /api/v1/auth/token, never a key: a key (typed in the sign-in form, or
  // from a sign-in address) is exchanged at once and forgotten. The token is kept in sessionStorage: this
  // tab's only, gone when it closes; not localStorage (every tab, for good), not a cookie (a browser would
  // send that by itself, to any request another site makes it send). It goes in an Authorization header,
  // never in a URL: URLs reach access logs.
  var session = null; // {token, name, role, expires (ms since the epoch)}; null: signed out
  var lastWho = null; // the key whose session expired: signed in with it again, the page carries on

  // The key a session's token was issued for (its `sub` claim), or failing that its name and role.
  function who(s) {
    try {
      var claims = s.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      var sub = JSON.parse(atob(claims)).sub;
      if (typeof sub === 'string' && sub) return sub;
    } catch (ignored) { /* not a JWT this page can read */ }
    return s.name + '\n' + s.role;
  }

  function may(role) {
    return !!session && (RANK[session.role] || 0) >= RANK[role];
  }

  function authorized(headers) {
    if (session && session.token) headers.Authorization = 'Bearer ' + session.token;
    return headers;
  }

  function signedOutError() {
    var err = new Error('Not signed in.');
    err.signedOut = true;
    return err;
  }

  // fetch() with the token. A 401 ends the session (the token expired, or its key was revoked), unless it
  // answers a request of an older session. Signed out, nothing is sent. Either way the promise rejects with
  // an error whose `signedOut` is true: callers leave those to the sign-in form.
  function send(url, options) {
    if (authOn && !session) return Promise.reject(signedOutError());
    var sent = session;
    options.headers = authorized(options.headers || {});
    return fetch(url, options).then(function (response) {
      if (response.status !== 401 || !authOn) return response;
      return response.text().then(function (text) {
        expired(sent, errorText(401, text));
        throw signedOutError();
      }, function () {
        expired(sent, '');
        throw signedOutError();
      });
    });
  }

  function getJSON(url) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    function unreachable(err) {
      if (err && err.signedOut) throw err;
      throw new Error(controller.signal.aborted ? 'The server did not answer within ' +
        integer.format(FETCH_TIMEOUT_MS / 1000) + ' s.' : 'The server could not be reached.');
    }
    return send(url, { headers: { Accept: 'application/json' }, signal: controller.signal })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw new Error(errorText(response.status, text));
          return JSON.parse(text);
        }, unreachable);
      }, unreachable)
      .finally(function () { clearTimeout(timer); });
  }

  // -- signing in and out -----------------------------------------------------------------------------
  var signIn = $('sign-in');
  var signInForm = $('sign-in-form');
  var keyInput = $('sign-in-key');
  var signInButton = $('sign-in-button');
  var signInError = $('sign-in-error');
  var signInNotice = $('sign-in-notice');
  var exchanging = 0; // the latest exchange of a key: an older one's answer is dropped

  function store(s) {
    try {
      sessionStorage.setItem(STORED, JSON.stringify(s));
    } catch (ignored) { /* storage off: the session lasts as long as the page */ }
  }

  function unstore() {
    try {
      sessionStorage.removeItem(STORED);
    } catch (ignored) { /* nothing was stored */ }
  }

  function restore() {
    try {
      var s = JSON.parse(sessionStorage.getItem(STORED));
      if (s && typeof s.token === 'string' && typeof s.name === 'string' && RANK[s.role] != null) return s;
    } catch (ignored) { /* none, or not ours */ }
    return null;
  }

  // A key for a token. `typed`: from the form (the focus then moves on), not from a sign-in address.
  function exchange(key, typed) {
    var ticket = ++exchanging;
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    showSignIn('Signing in…');
    signInButton.disabled = true;
    fetch('/api/v1/auth/token', {
      method: 'POST', cache: 'no-store', signal: controller.signal,
      headers: { Accept: 'application/json', Authorization: 'Bearer ' + key },
    }).then(function (response) {
      return response.text().then(function (text) {
        if (!response.ok) throw new Error(errorText(response.status, text));
        return JSON.parse(text);
      });
    }).then(function (answer) {
      if (ticket !== exchanging) return;
      keyInput.value = '';
      begin({ token: answer.access_token, name: String(answer.name), role: String(answer.role),
              expires: Date.now() + answer.expires_in * 1000 }, typed);
    }, function (err) {
      if (ticket !== exchanging) return;
      showSignIn('');
      var why = controller.signal.aborted ? 'The server did not answer within ' +
        integer.format(FETCH_TIMEOUT_MS / 1000) + ' s.' :
        err instanceof TypeError ? 'The server could not be reached.' : err.message;
      show(signInError, ['Could not sign in: ', theirs(why)]);
      keyInput.focus();
    }).finally(function () {
      clearTimeout(timer);
      if (ticket === exchanging) signInButton.disabled = false;
    });
  }

  function begin(s, typed) {
    session = s;
    if (authOn) store(s);
    signedIn(typed);
  }

  // The page for who is signed in: a reader sees the catalogue only (uploads and tasks would answer 403).
  function signedIn(typed) {
    var same = lastWho !== null && lastWho === who(session);
    lastWho = null;
    body.dataset.session = session.role;
    signIn.hidden = true;
    show(signInError, '');
    $('session').hidden = !authOn;
    say($('session-who'), ['Signed in as ', theirs(session.name), ' (' + session.role + ')']);
    $('sections').hidden = false;
    Array.prototype.forEach.call(document.querySelectorAll('[data-needs]'), function (element) {
      element.hidden = !may(element.dataset.needs);
    });
    $('reader-note').hidden = may('uploader');
    if (!same) forgetTasks();
    if (may('uploader')) {
      loadTasks();
      if (job && job.interrupted) follow(job); // the same person again: the panel's task is watched on
    }
    if (applied) loadMovies(); // the filters and page as they were before the session ended
    else applyFilters();
    if (typed) (may('uploader') ? input : $('movie-year')).focus();
  }

  // Signed out: only the sign-in form shows. What was typed or chosen elsewhere stays in its (hidden) field.
  function showSignIn(notice) {
    body.dataset.session = 'none';
    $('session').hidden = true;
    $('sections').hidden = true;
    $('reader-note').hidden = true;
    Array.prototype.forEach.call(document.querySelectorAll('[data-needs]'), function (element) {
      element.hidden = true;
    });
    signIn.hidden = false;
    say(signInNotice, notice);
    show(signInError, '');
  }

  function signOut(notice) {
    session = null;
    unstore();
    if (job && !job.done) job.interrupted = true;
    stopWatching();
    showSignIn(notice);
    keyInput.focus();
    if (offered) offerKey(offered); // a key still asked about: no session to keep any more
  }

  // A 401 to a request of the current session: it is over. The API's message says why.
  function expired(sent, message) {
    if (!sent || sent !== session) return; // an older session's late answer
    lastWho = who(sent);
    signOut(message ? EXPIRED + ' The server said: ' + message : EXPIRED);
  }

  // What belonged to the one who signed out: their tasks, and the task in the panel.
  function forgetTasks() {
    stopWatching();
    job = null;
    panel.hidden = true;
    show(uploadError, '');
    $('tasks-body').textContent = '';
    tasksMessage.textContent = 'Loading…';
  }

  $('sign-out').addEventListener('click', function () {
    lastWho = null;
    ++exchanging;
    signOut('You have signed out.');
    forgetTasks();
  });

  signInForm.addEventListener('submit', function (event) {
    event.preventDefault();
    var key = keyInput.value.trim();
    if (!key) {
      showSignIn('');
      show(signInError, 'Paste an API key first.');
      keyInput.focus();
      return;
    }
    exchange(key, true);
  });

  // -- a key in the address ---------------------------------------------------------------------------
  // A link can carry anyone's key: one from another site could sign this tab in as its author, whose key
  // would then own the next upload and download its result. So a key in the address is never taken
  // silently: the page asks first, showing which key it is (its id and first characters, never the
  // secret). It asks always, not only with a session open: a link followed from another site usually
  // opens a new tab, which has no session yet, and that is where a swapped key would go unnoticed. Until
  // answered, the key is held here only; either way it is then forgotten (it left the address bar at once).
  var offer = $('address-key');
  var refuseButton = $('address-key-refuse');
  var offered = null;

  function keyShown(key) {
    var id = /^mcat_([0-9a-f]{16})/.exec(key);
    var start = theirs(key.slice(0, Math.min(SHOWN_CHARS, Math.floor(key.length / 2))) + '…');
    return id ? ['API key ', theirs('key_' + id[1]), ' (', start, ')'] :
      ['a value that is not an API key (', start, ')'];
  }

  function offerKey(key) {
    if (!authOn || !key) return;
    offered = key;
    var which = ['This link signs in with '].concat(keyShown(key));
    which = which.concat(session ? ['. You are signed in as ', theirs(session.name), ' (' + session.role +
      '): that session goes on unless you choose the key.'] : ['.']);
    say($('address-key-which'), which);
    say(refuseButton, session ? ['Stay signed in as ', theirs(session.name)] : 'Do not sign in');
    offer.hidden = false;
    refuseButton.focus(); // the safe answer is the one Enter gives
  }

  function answerOffer(accepted) {
    var key = offered;
    offered = null;
    offer.hidden = true;
    say($('address-key-which'), '');
    if (!accepted) {
      if (!session) keyInput.focus();
      return;
    }
    if (session) {
      lastWho = null;
      signOut('');
      forgetTasks();
    }
    exchange(key, false);
  }

  refuseButton.addEventListener('click', function () { answerOffer(false); });
  $('address-key-accept').addEventListener('click', function () { answerOffer(true); });

  // A sign-in address opened in a tab that already shows the page only changes the fragment.
  window.addEventListener('hashchange', function () {
    offerKey(takeKeyFromAddress());
  });

  // -- upload and the job's progress --------------------------------------------------------------
  var form = $('upload-form');
  var input = $('upload-file');
  var zone = $('drop-zone');
  var button = $('upload-button');
  var uploadError = $('upload-error');
  var panel = $('job');
  var phase = $('job-phase');
  var bar = $('job-bar');
  // The task being watched: {id, filename, uploaded, transport, source, timer, done, task, run, interrupted}.
  // `run` counts the times it was (re)started; `interrupted`: its session ended before it did.
  var job = null;
  var sending = false; // an upload is on its way: the panel shows its bytes, not the watched task

  function describeChosen() {
    var file = input.files && input.files[0];
    show($('upload-chosen'), file ? [theirs(file.name), ', ' + bytes(file.size)] : '');
    show(uploadError, '');
  }

  input.addEventListener('change', describeChosen);

  // Dropping a file anywhere else would make the browser open it and leave the page.
  ['dragover', 'drop'].forEach(function (type) {
    window.addEventListener(type, function (event) { event.preventDefault(); });
  });
  ['dragenter', 'dragover'].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add('dragging');
    });
  });
  ['dragleave', 'drop'].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove('dragging'); });
  });
  zone.addEventListener('drop', function (event) {
    var files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    input.files = files;
    describeChosen();
    input.focus();
  });

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var file = input.files && input.files[0];
    if (!file) {
      show(uploadError, 'Choose a CSV file first.');
      input.focus();
      return;
    }
    if (maxUploadMb && file.size > maxUploadMb * 1024 * 1024) {
      // The server would refuse it too (413), but only after the browser sent all of it.
      refused(file, 'The file is ' + bytes(file.size) + ', over the limit of ' + maxUploadMb + ' MiB.');
      return;
    }
    upload(file, $('upload-kind').value);
  });

  function stopWatching() {
    if (!job) return;
    job.done = true;
    if (job.source) job.source.abort();
    job.source = null;
    clearTimeout(job.timer);
  }

  // The task being watched keeps being watched while another file is sent: only an accepted upload
  // replaces it, and a refused one gives the panel back to it.
  function upload(file, kind) {
    if (authOn && !session) return;
    var sent = session;
    show(uploadError, '');
    var data = new FormData();
    if (kind) data.append('kind', kind);
    data.append('file', file, file.name);

    sending = true;
    panel.hidden = false;
    panel.dataset.status = 'sending';
    panel.dataset.transport = '';
    resetFigures();
    $('job-rows-label').textContent = 'Sent';
    say(phase, ['Sending ', theirs(file.name), '…']);
    bar.value = 0;
    button.disabled = true;

    var xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/upload');
    xhr.setRequestHeader('Accept', 'application/json');
    if (sent && sent.token) xhr.setRequestHeader('Authorization', 'Bearer ' + sent.token);
    xhr.upload.addEventListener('progress', function (event) {
      if (!event.lengthComputable) return;
      var percent = event.total ? (event.loaded / event.total) * 100 : 100;
      bar.value = percent;
      $('job-percent').textContent = oneDecimal.format(percent) + ' %';
      $('job-rows').textContent = bytes(event.loaded) + ' of ' + bytes(event.total);
    });
    xhr.addEventListener('load', function () {
      button.disabled = false;
      sending = false;
      if (xhr.status === 202) {
        var answer = JSON.parse(xhr.responseText);
        stopWatching();
        watch(answer.task_id, file.name, true);
        loadTasks();
        return;
      }
      showJob();
      if (xhr.status === 401 && authOn) {
        refused(file, 'Your session had expired; sign in, then press Upload again.');
        expired(sent, errorText(xhr.status, xhr.responseText));
        return;
      }
      refused(file, errorText(xhr.status, xhr.responseText));
    });
    xhr.addEventListener('error', function () {
      button.disabled = false;
      sending = false;
      showJob();
      refused(file, 'The upload did not reach the server, or the connection broke off before it answered.');
    });
    xhr.send(data);
  }

  function refused(file, message) {
    show(uploadError, [theirs(file.name), ' was not accepted: ', theirs(message)]);
    input.focus();
  }

  function resetFigures() {
    ['job-rows', 'job-percent', 'job-rate', 'job-eta'].forEach(function (id) { $(id).textContent = '–'; });
    $('job-result').hidden = true;
    $('job-rejects').hidden = true;
    $('job-rejects-body').textContent = '';
    phase.classList.remove('error');
  }

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
      say(phase, job.uploaded ? ['Sent ', theirs(job.filename), '; waiting for a worker…'] :
        ['Looking up ', theirs(job.filename), '…']);
    }
  }

  // `uploaded`: sent from this page just now (rather than opened from the task list).
  function watch(taskId, filename, uploaded) {
    job = { id: taskId, filename: filename, uploaded: uploaded, transport: '', source: null, timer: null,
            done: false, task: null, rejectsShown: '', lostTouch: false, run: 0, interrupted: false };
    showJob();
    follow(job);
  }

  // A body read as it arrives is what an event stream needs; a browser without it polls.
  function canStream() {
    return typeof window.ReadableStream === 'function' && typeof window.TextDecoder === 'function' &&
      typeof window.Response === 'function' && 'body' in window.Response.prototype;
  }

  // Watch (or, after a new sign-in, watch again) a task; signed out, it waits for the next sign-in.
  function follow(watched) {
    watched.run += 1;
    watched.done = false;
    watched.interrupted = false;
    if (authOn && !session) {
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
    var run = watched.run;
    var url = '/api/v1/process/' + encodeURIComponent(watched.id) + '/events';
    var failures = 0;
    var retryMs = 3000; // until the server says otherwise, as EventSource's default
    function stale() { return watched.done || watched.run !== run; }

    function failed(fatal) {
      if (stale()) return;
      watched.source = null;
      failures += 1;
      if (fatal || failures >= STREAM_FAILURES) poll(watched);
      else watched.timer = setTimeout(connect, retryMs);
    }

    function connect() {
      if (stale()) return;
      var controller = new AbortController();
      var ended = false;
      // Only the answer's headers must come in time; the stream itself may stay open for minutes.
      var opening = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
      watched.source = controller;
      send(url, { headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: controller.signal })
        .then(function (response) {
          clearTimeout(opening);
          var type = (response.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
          if (!response.ok || type !== 'text/event-stream' || !response.body) {
            controller.abort();
            failed(true);
            return;
          }
          return readEvents(response.body.getReader(), function (event, data) {
            if (stale()) return;
            if (event === 'progress') {
              failures = 0;
              update(watched, JSON.parse(data));
            } else if (event === 'end') {
              ended = true;
            }
          }, function (ms) { retryMs = ms; }).then(function () {
            if (stale()) return;
            if (ended) poll(watched); // ended, yet the last progress did not say so: ask once more
            else failed(false);
          });
        })
        .catch(function () {
          clearTimeout(opening);
          controller.abort(); // whatever is left of this stream
          failed(false); // cut off, unreachable, or signed out (then stale: the next sign-in follows it again)
        });
    }
    connect();
  }

  // The text/event-stream format: `field: value` lines; a blank line dispatches the event gathered so far.
  // Lines end in CR, LF or CRLF; one starting with a colon is a comment (the server's keep-alive).
  function readEvents(reader, dispatch, setRetry) {
    var decoder = new TextDecoder();
    var buffer = '';
    var type = '';
    var data = [];

    function line(text) {
      if (text === '') {
        if (data.length) dispatch(type || 'message', data.join('\n'));
        type = '';
        data = [];
        return;
      }
      if (text.charAt(0) === ':') return;
      var colon = text.indexOf(':');
      var field = colon < 0 ? text : text.slice(0, colon);
      var value = colon < 0 ? '' : text.slice(colon + 1);
      if (value.charAt(0) === ' ') value = value.slice(1);
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry' && /^[0-9]+$/.test(value)) setRetry(Number(value));
      // `id` and other fields: this server sends none the page needs
    }

    // Resolves when the stream ends; rejects when it breaks off, or an event cannot be handled.
    return new Promise(function (resolve, reject) {
      function pump() {
        reader.read().then(function (chunk) {
          if (chunk.done) {
            resolve(); // an event not ended by a blank line is dropped, as the format says
            return;
          }
          buffer += decoder.decode(chunk.value, { stream: true });
          var held = buffer.slice(-1) === '\r' ? '\r' : ''; // perhaps the first half of a CRLF
          var lines = buffer.slice(0, buffer.length - held.length).split(/\r\n|\r|\n/);
          buffer = lines.pop() + held;
          lines.forEach(line);
          pump();
        }).catch(reject);
      }
      pump();
    });
  }

  function poll(watched) {
    setTransport(watched, 'polling');
    var run = watched.run;
    function stale() { return watched.done || watched.run !== run; }
    function tick() {
      if (stale()) return;
      getJSON('/api/v1/process/' + encodeURIComponent(watched.id)).then(function (task) {
        if (!stale()) update(watched, task);
      }, function (err) {
        if (stale() || err.signedOut) return;
        watched.lostTouch = true; // the next answer rewrites the line, changed status or not
        if (watched === job && !sending) {
          say(phase, ['Lost touch with the task (', theirs(err.message), '); retrying…']);
        }
      }).then(function () {
        if (!stale()) watched.timer = setTimeout(tick, POLL_MS);
      });
    }
    tick();
  }

  function update(watched, task) {
    if (watched !== job || watched.done) return;
    var changed = !watched.task || task.status !== watched.task.status;
    watched.task = task;
    // The live region speaks only when the status changes, or to take back "Lost touch".
    if (!sending) render(watched, changed || watched.lostTouch);
    watched.lostTouch = false;
    if (changed) loadTasks();
    if (!ACTIVE[task.status]) {
      stopWatching();
      if (watched.uploaded && task.status === 'completed' && task.kind === 'movies') newMovies();
    }
  }

  function render(watched, speak) {
    var task = watched.task;
    var status = task.status;
    panel.dataset.status = status;
    $('job-rows-label').textContent = 'Rows';
    bar.value = task.percent || 0;
    $('job-percent').textContent = oneDecimal.format(task.percent || 0) + ' %';
    $('job-rows').textContent = count(task.rows_read) +
      (task.rows_rejected ? ' (' + count(task.rows_rejected) + ' rejected)' : '');
    $('job-rate').textContent = task.rows_per_sec ? count(task.rows_per_sec) : '–';
    $('job-eta').textContent = status === 'processing' ? timeLeft(task) : (ACTIVE[status] ? '–' : 'none');
    showRejects(watched, task);
    if (speak) {
      say(phase, describe(task, watched.filename));
      phase.classList.toggle('error', status === 'failed');
    }
    // Only a path of this API: "//elsewhere/x" is a link to another host.
    var result = status === 'completed' && typeof task.result_url === 'string' &&
      task.result_url.indexOf('/api/') === 0;
    if (result) {
      if (resultLink.dataset.url !== task.result_url) show(resultError, ''); // another task's failed download
      resultLink.dataset.url = task.result_url;
      say(resultLink, ['Download the totals of ', theirs(watched.filename)]);
    }
    $('job-result').hidden = !result;
    if (!result) show(resultError, '');
  }

  // -- the result download ----------------------------------------------------------------------------
  // Not a plain link: the request must carry the token, and a token in the URL would reach access logs. The
  // file is fetched with it, then saved from a Blob's object URL under the name the server gave it.
  var resultLink = $('job-result-link');
  var resultError = $('job-result-error');

  resultLink.addEventListener('click', function () {
    var url = resultLink.dataset.url;
    if (!url || resultLink.getAttribute('aria-busy') === 'true') return;
    resultLink.setAttribute('aria-busy', 'true'); // not `disabled`: that would drop the keyboard focus
    show(resultError, '');
    send(url, { headers: { Accept: 'text/csv' }, cache: 'no-store' }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) { throw new Error(errorText(response.status, text)); });
      }
      var name = attachmentName(response.headers.get('Content-Disposition')) || 'totals.csv';
      return response.blob().then(function (blob) { save(blob, name); });
    }).catch(function (err) {
      if (err.signedOut) return;
      show(resultError, ['The download failed: ', theirs(err instanceof TypeError ?
        'The server could not be reached.' : err.message)]);
    }).finally(function () {
      resultLink.removeAttribute('aria-busy');
    });
  });

  // The file name of a Content-Disposition header: RFC 6266's filename*=UTF-8''… first, else filename="…".
  function attachmentName(header) {
    if (!header) return '';
    var extended = /filename\*\s*=\s*utf-8'[^']*'([^;\s]+)/i.exec(header);
    if (extended) {
      try {
        return decodeURIComponent(extended[1]);
      } catch (ignored) { /* badly encoded: the plain name instead */ }
    }
    var plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(header);
    if (!plain) return '';
    return plain[1] != null ? plain[1].replace(/\\(.)/g, '$1') : plain[2];
  }

  function save(blob, name) {
    var url = URL.createObjectURL(blob);
    var anchor = document.createElement('a');
    anchor.href = url;
    anchor.download = name;
    anchor.hidden = true;
    body.appendChild(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000); // once the browser surely has it
  }

  function describe(task, filename) {
    var name = theirs(filename);
    switch (task.status) {
      case 'pending': return ['Sent ', name, '; waiting for a worker…'];
      case 'processing': return ['Processing ', name, '…'];
      case 'completed':
        return ['Completed: ', name, ', ' + count(task.rows_read) + ' rows in ' + seconds(task.duration_s) +
          (task.rows_rejected ? ', ' + count(task.rows_rejected) + ' rejected' : '') + '.'];
      case 'failed':
        return ['Failed: ', name, ': ', theirs(task.error || 'no reason was recorded'), '.'];
      case 'cancelled': return ['Cancelled: ', name, ' was stopped after ' + count(task.rows_read) + ' rows.'];
      default: return String(task.status);
    }
  }

  // From the worker's own rate, so it does not depend on this computer's clock agreeing with the server's.
  function timeLeft(task) {
    if (!task.rows_per_sec || !task.rows_read || !task.bytes_read || !task.bytes_total) return '–';
    var bytesPerSecond = task.rows_per_sec * task.bytes_read / task.rows_read;
    return 'about ' + seconds(Math.max(0, task.bytes_total - task.bytes_read) / bytesPerSecond);
  }

  function showRejects(watched, task) {
    var rejects = task.rejects || [];
    var last = rejects[rejects.length - 1];
    var shown = rejects.length + ':' + (last ? last.line : ''); // rebuilt only when the kept list changed
    if (shown !== watched.rejectsShown) {
      watched.rejectsShown = shown;
      var tbody = $('job-rejects-body');
      tbody.textContent = '';
      rejects.forEach(function (reject) {
        var row = document.createElement('tr');
        cell(row, count(reject.line), 'num');
        cell(row, theirs(reject.reason));
        tbody.appendChild(row);
      });
    }
    var heading = 'Rejected rows: ' + count(task.rows_rejected);
    if (task.rows_rejected > rejects.length) heading += ' (the first ' + count(rejects.length) + ' are listed)';
    $('job-rejects-heading').textContent = heading;
    $('job-rejects').hidden = rejects.length === 0;
  }

  // -- recent tasks -----------------------------------------------------------------------------------
  var tasksMessage = $('tasks-message');
  var tasksLatest = 0; // as for the movies: an older answer arriving late is dropped

  function loadTasks() {
    if (!may('uploader')) return; // a reader would be answered 403; signed out, nothing is asked
    var ticket = ++tasksLatest;
    return getJSON('/api/v1/processes?limit=10').then(function (page) {
      if (ticket !== tasksLatest) return;
      renderTasks(page.processes);
      tasksMessage.classList.remove('error');
      tasksMessage.textContent = page.processes.length ? '' : 'No tasks yet: upload a file above.';
    }, function (err) {
      if (ticket !== tasksLatest || err.signedOut) return;
      tasksMessage.classList.add('error');
      say(tasksMessage, ['Could not load the tasks: ', theirs(err.message)]);
    });
  }

  function renderTasks(list) {
    var tbody = $('tasks-body');
    tbody.textContent = '';
    list.forEach(function (task) {
      var row = document.createElement('tr');
      row.dataset.taskId = task.task_id;
      var status = cell(row, task.status + (task.status === 'processing' ?
        ' ' + oneDecimal.format(task.percent || 0) + ' %' : ''), 'status');
      status.dataset.status = task.status;
      if (task.error) {
        var reason = document.createElement('span');
        reason.className = 'reason';
        say(reason, theirs(task.error));
        status.appendChild(reason);
      }
      cell(row, theirs(task.filename), 'file');
      cell(row, task.kind);
      cell(row, bytes(task.size), 'num');
      cell(row, count(task.rows_read) + (task.rows_rejected ? ' (' + count(task.rows_rejected) + ' rejected)' : ''),
        'num');
      cell(row, task.duration_s != null ? seconds(task.duration_s) : '–', 'num');
      cell(row, when(task.created_at));
      var open = document.createElement('button');
      open.type = 'button';
      open.className = 'secondary small';
      open.textContent = 'Show';
      open.setAttribute('aria-label', 'Show the progress of ' + task.filename);
      open.addEventListener('click', function () { reopen(task); });
      cell(row, open);
      tbody.appendChild(row);
    });
  }

  // A task from the list back in the upload panel, with its progress and rejected rows.
  function reopen(task) {
    if (sending) return; // the panel is showing the file being sent; the button works again after
    show(uploadError, '');
    stopWatching();
    watch(task.task_id, task.filename, false);
    phase.focus();
  }

  $('tasks-refresh').addEventListener('click', loadTasks);
  setInterval(function () { if (!document.hidden) loadTasks(); }, TASKS_EVERY_MS); // signed in, as uploader

  // -- movies -------------------------------------------------------------------------------------------
  var filters = $('movie-filters');
  var moviesError = $('movies-error');
  var moviesMessage = $('movies-message');
  var prev = $('movies-prev');
  var next = $('movies-next');
  var applied = null; // the filters as last applied: the pager keeps to these, not to what is typed since
  var moviePage = 1;
  var moviePages = 0;
  var latest = 0; // answers to older requests are dropped when a newer one was sent
  var newMoviesDue = null; // a movies upload completed: the timer of the reload once the server's cache expired

  function applyFilters() {
    applied = {};
    ['year', 'language', 'sort_by', 'order', 'limit'].forEach(function (name) {
      applied[name] = filters.elements[name].value.trim();
    });
    moviePage = 1;
    loadMovies();
  }

  function movieQuery() {
    var params = new URLSearchParams();
    Object.keys(applied).forEach(function (name) {
      if (applied[name]) params.set(name, applied[name]);
    });
    params.set('page', String(moviePage));
    return params;
  }

  function loadMovies() {
    var params = movieQuery();
    var ticket = ++latest;
    $('movies-table').setAttribute('aria-busy', 'true');
    return getJSON('/api/v1/movies?' + params.toString()).then(function (page) {
      if (ticket !== latest) return;
      show(moviesError, '');
      if (page.page > page.total_pages && page.total_pages > 0) {
        // Fewer pages than when this one was asked for (the data changed): show the last one there is.
        moviePage = page.total_pages;
        loadMovies();
        return;
      }
      renderMovies(page, params);
    }, function (err) {
      if (ticket !== latest || err.signedOut) return;
      $('movies-body').textContent = '';
      moviesMessage.textContent = '';
      show(moviesError, ['Could not load movies: ', theirs(err.message)]);
      moviePages = 0;
      $('movies-page').textContent = 'Page – of –';
      $('movies-total').textContent = '';
      setPager(true, true);
    }).then(function () {
      if (ticket === latest) $('movies-table').removeAttribute('aria-busy');
    });
  }

  // Disabling the focused button would drop the keyboard focus on <body>: it moves to the other one.
  function setPager(prevOff, nextOff) {
    var focused = document.activeElement;
    prev.disabled = prevOff;
    next.disabled = nextOff;
    if (focused === next && nextOff && !prevOff) prev.focus();
    else if (focused === prev && prevOff && !nextOff) next.focus();
  }

  function renderMovies(page, params) {
    var tbody = $('movies-body');
    tbody.textContent = '';
    page.movies.forEach(function (movie) {
      var row = document.createElement('tr');
      cell(row, movie.title ? theirs(movie.title) : '–', 'title');
      cell(row, movie.release_date ? movie.release_date.slice(0, 10) : '–');
      cell(row, movie.original_language ? theirs(movie.original_language) : '–');
      cell(row, movie.vote_average != null ? oneDecimal.format(movie.vote_average) : '–', 'num');
      cell(row, count(movie.vote_count), 'num');
      cell(row, movie.runtime != null ? movie.runtime + ' min' : '–', 'num');
      tbody.appendChild(row);
    });
    moviePages = page.total_pages;
    var filtered = params.has('year') || params.has('language');
    var empty = filtered ? 'No movies match these filters.' :
      may('uploader') ? 'No movies yet: upload a movies CSV above.' : 'No movies yet.';
    moviesMessage.textContent = page.total_docs ? '' : (newMoviesDue ? 'Loading the new movies…' : empty);
    var pages = Math.max(page.total_pages, 1); // no results is still one (empty) page
    $('movies-page').textContent = 'Page ' + count(Math.min(page.page, pages)) + ' of ' + count(pages);
    $('movies-total').textContent = count(page.total_docs) + (page.total_docs === 1 ? ' movie' : ' movies');
    setPager(page.page <= 1, page.page >= page.total_pages);
    var sortBy = params.get('sort_by');
    var order = params.get('order') === '-1' ? 'descending' : 'ascending';
    Array.prototype.forEach.call(document.querySelectorAll('#movies-table th'), function (th) {
      if (th.dataset.sort === sortBy) th.setAttribute('aria-sort', order);
      else th.removeAttribute('aria-sort');
    });
  }

  // After a movies upload: the server caches each page for cacheTtl seconds, so a page asked for before
  // the upload can come back unchanged until then; it is asked for again once that has run out.
  function newMovies() {
    clearTimeout(newMoviesDue);
    newMoviesDue = setTimeout(function () {
      newMoviesDue = null;
      loadMovies();
    }, (cacheTtl + 0.5) * 1000);
    loadMovies();
  }

  filters.addEventListener('submit', function (event) {
    event.preventDefault();
    applyFilters();
  });
  ['sort_by', 'order', 'limit'].forEach(function (name) {
    filters.elements[name].addEventListener('change', applyFilters);
  });
  prev.addEventListener('click', function () {
    if (moviePage > 1) { moviePage -= 1; loadMovies(); }
  });
  next.addEventListener('click', function () {
    if (moviePage < moviePages) { moviePage += 1; loadMovies(); }
  });

  // -- start ----------------------------------------------------------------------------------------------
  if (!authOn) {
    begin({ token: null, name: 'anyone (AUTH=false)', role: 'admin', expires: Infinity }, false);
  } else {
    var kept = restore();
    if (kept && kept.expires > Date.now()) {
      session = kept;
      signedIn(false);
    } else {
      unstore();
      showSignIn(kept ? EXPIRED : '');
      keyInput.focus();
    }
    offerKey(addressKey); // a sign-in address: asked, never taken silently
  }
}());
