// The content team's page: upload with live progress, recent tasks, the movie catalogue.
// Plain browser JavaScript, no build step. Everything from the server is put in the page with
// textContent (never innerHTML), so a title or a file name can never become markup.
(function () {
  'use strict';

  var POLL_MS = 1000; // a task's status, when event streams are unavailable
  var TASKS_EVERY_MS = 3000; // the recent-tasks table
  var STREAM_FAILURES = 3; // errors in a row before an event stream is given up for polling
  var FETCH_TIMEOUT_MS = 10000; // a request that hangs longer is abandoned, so polling and reloads go on
  var ACTIVE = { pending: true, processing: true };

  var body = document.body;
  var maxUploadMb = Number(body.dataset.maxUploadMb) || 0;
  var cacheTtl = Number(body.dataset.cacheTtl) || 5;

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

  function getJSON(url) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    function unreachable() {
      throw new Error(controller.signal.aborted ? 'The server did not answer within ' +
        integer.format(FETCH_TIMEOUT_MS / 1000) + ' s.' : 'The server could not be reached.');
    }
    return fetch(url, { headers: { Accept: 'application/json' }, signal: controller.signal })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw new Error(errorText(response.status, text));
          return JSON.parse(text);
        }, unreachable);
      }, unreachable)
      .finally(function () { clearTimeout(timer); });
  }

  // -- upload and the job's progress --------------------------------------------------------------
  var form = $('upload-form');
  var input = $('upload-file');
  var zone = $('drop-zone');
  var button = $('upload-button');
  var uploadError = $('upload-error');
  var panel = $('job');
  var phase = $('job-phase');
  var bar = $('job-bar');
  var job = null; // the task being watched: {id, filename, uploaded, transport, source, timer, done, task}
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
    if (job.source) job.source.close();
    clearTimeout(job.timer);
  }

  // The task being watched keeps being watched while another file is sent: only an accepted upload
  // replaces it, and a refused one gives the panel back to it.
  function upload(file, kind) {
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
            done: false, task: null, rejectsShown: '', lostTouch: false };
    showJob();
    if (window.EventSource) stream(job);
    else poll(job);
  }

  function setTransport(watched, transport) {
    watched.transport = transport;
    if (watched === job && !sending) panel.dataset.transport = transport;
  }

  // Server-Sent Events: one event per change of the task. The server may refuse a stream (503 when it has
  // too many open); then, or after repeated errors, the page polls instead.
  function stream(watched) {
    setTransport(watched, 'events');
    var source = new EventSource('/api/v1/process/' + encodeURIComponent(watched.id) + '/events');
    var failures = 0;
    watched.source = source;
    source.addEventListener('progress', function (event) {
      failures = 0;
      update(watched, JSON.parse(event.data));
    });
    source.addEventListener('end', function () { source.close(); });
    source.addEventListener('error', function () {
      if (watched.done) return;
      failures += 1;
      // CONNECTING: EventSource reconnects by itself (the server closes long streams on purpose).
      if (source.readyState === EventSource.CLOSED || failures >= STREAM_FAILURES) {
        source.close();
        watched.source = null;
        poll(watched);
      }
    });
  }

  function poll(watched) {
    setTransport(watched, 'polling');
    function tick() {
      if (watched.done) return;
      getJSON('/api/v1/process/' + encodeURIComponent(watched.id)).then(function (task) {
        update(watched, task);
      }, function (err) {
        if (watched.done) return;
        watched.lostTouch = true; // the next answer rewrites the line, changed status or not
        if (watched === job && !sending) {
          say(phase, ['Lost touch with the task (', theirs(err.message), '); retrying…']);
        }
      }).then(function () {
        if (!watched.done) watched.timer = setTimeout(tick, POLL_MS);
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
      var link = $('job-result-link');
      link.href = task.result_url;
      say(link, ['Download the totals of ', theirs(watched.filename)]);
    }
    $('job-result').hidden = !result;
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
    var ticket = ++tasksLatest;
    return getJSON('/api/v1/processes?limit=10').then(function (page) {
      if (ticket !== tasksLatest) return;
      renderTasks(page.processes);
      tasksMessage.classList.remove('error');
      tasksMessage.textContent = page.processes.length ? '' : 'No tasks yet: upload a file above.';
    }, function (err) {
      if (ticket !== tasksLatest) return;
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
  setInterval(function () { if (!document.hidden) loadTasks(); }, TASKS_EVERY_MS);

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
      if (ticket !== latest) return;
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
    var empty = filtered ? 'No movies match these filters.' : 'No movies yet: upload a movies CSV above.';
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

  loadTasks();
  applyFilters();
}());
