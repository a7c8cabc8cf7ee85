// The content team's page: upload with live progress, recent tasks, the movie catalogue.
// Plain browser JavaScript, no build step. Everything from the server is put in the page with
// textContent (never innerHTML), so a title or a file name can never become markup.
(function () {
  'use strict';

  var POLL_MS = 1000; // a task's status, when event streams are unavailable
  var TASKS_EVERY_MS = 3000; // the recent-tasks table
  var STREAM_FAILURES = 3; // errors in a row before an event stream is given up for polling
  var ACTIVE = { pending: true, processing: true };

  var body = document.body;
  var maxUploadMb = Number(body.dataset.maxUploadMb) || 0;
  var cacheTtl = Number(body.dataset.cacheTtl) || 5;

  function $(id) { return document.getElementById(id); }

  function cell(row, text, className) {
    var td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function show(element, text) {
    element.textContent = text || '';
    element.hidden = !text;
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
    return fetch(url, { headers: { Accept: 'application/json' } }).then(function (response) {
      return response.text().then(function (text) {
        if (!response.ok) throw new Error(errorText(response.status, text));
        return JSON.parse(text);
      });
    }, function () {
      throw new Error('The server could not be reached.');
    });
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
  var job = null; // the task being watched: {id, filename, source, timer, done}

  function describeChosen() {
    var file = input.files && input.files[0];
    show($('upload-chosen'), file ? file.name + ', ' + bytes(file.size) : '');
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

  function upload(file, kind) {
    stopWatching();
    show(uploadError, '');
    var data = new FormData();
    if (kind) data.append('kind', kind);
    data.append('file', file, file.name);

    panel.hidden = false;
    panel.dataset.status = 'sending';
    panel.dataset.transport = '';
    resetFigures();
    $('job-rows-label').textContent = 'Sent';
    phase.textContent = 'Sending ' + file.name + '…';
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
      if (xhr.status === 202) {
        var answer = JSON.parse(xhr.responseText);
        watch(answer.task_id, file.name);
        loadTasks();
        return;
      }
      panel.hidden = true;
      refused(file, errorText(xhr.status, xhr.responseText));
    });
    xhr.addEventListener('error', function () {
      button.disabled = false;
      panel.hidden = true;
      refused(file, 'The upload did not reach the server, or the connection broke off before it answered.');
    });
    xhr.send(data);
  }

  function refused(file, message) {
    show(uploadError, file.name + ' was not accepted: ' + message);
    input.focus();
  }

  function resetFigures() {
    ['job-rows', 'job-percent', 'job-rate', 'job-eta'].forEach(function (id) { $(id).textContent = '–'; });
    $('job-result').hidden = true;
    $('job-rejects').hidden = true;
    $('job-rejects-body').textContent = '';
    phase.classList.remove('error');
  }

  function watch(taskId, filename) {
    job = { id: taskId, filename: filename, source: null, timer: null, done: false, rejectsShown: '',
            status: null };
    panel.dataset.taskId = taskId;
    phase.textContent = 'Sent ' + filename + '; waiting for a worker…';
    bar.value = 0;
    if (window.EventSource) stream(job);
    else poll(job);
  }

  // Server-Sent Events: one event per change of the task. The server may refuse a stream (503 when it has
  // too many open); then, or after repeated errors, the page polls instead.
  function stream(watched) {
    panel.dataset.transport = 'events';
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
    panel.dataset.transport = 'polling';
    function tick() {
      if (watched.done) return;
      getJSON('/api/v1/process/' + encodeURIComponent(watched.id)).then(function (task) {
        update(watched, task);
      }, function (err) {
        if (!watched.done) phase.textContent = 'Lost touch with the task (' + err.message + '); retrying…';
      }).then(function () {
        if (!watched.done) watched.timer = setTimeout(tick, POLL_MS);
      });
    }
    tick();
  }

  function update(watched, task) {
    if (watched !== job || watched.done) return;
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

    if (status !== watched.status) { // the live region speaks only when the status changes
      watched.status = status;
      phase.textContent = describe(task, watched.filename);
      phase.classList.toggle('error', status === 'failed');
      loadTasks();
    }
    if (!ACTIVE[status]) {
      stopWatching();
      if (status === 'completed' && task.result_url && task.result_url.charAt(0) === '/') {
        var link = $('job-result-link');
        link.href = task.result_url;
        link.textContent = 'Download the totals of ' + watched.filename;
        $('job-result').hidden = false;
      }
      if (status === 'completed' && task.kind === 'movies') {
        loadMovies();
        setTimeout(loadMovies, (cacheTtl + 0.5) * 1000); // pages cached before the upload expire by then
      }
    }
  }

  function describe(task, filename) {
    switch (task.status) {
      case 'pending': return 'Sent ' + filename + '; waiting for a worker…';
      case 'processing': return 'Processing ' + filename + '…';
      case 'completed':
        return 'Completed: ' + filename + ', ' + count(task.rows_read) + ' rows in ' + seconds(task.duration_s) +
          (task.rows_rejected ? ', ' + count(task.rows_rejected) + ' rejected' : '') + '.';
      case 'failed': return 'Failed: ' + (task.error || 'no reason was recorded') + '.';
      case 'cancelled': return 'Cancelled: ' + filename + ' was stopped after ' + count(task.rows_read) + ' rows.';
      default: return task.status;
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
        cell(row, reject.reason);
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

  function loadTasks() {
    return getJSON('/api/v1/processes?limit=10').then(function (page) {
      renderTasks(page.processes);
      tasksMessage.classList.remove('error');
      tasksMessage.textContent = page.processes.length ? '' : 'No tasks yet: upload a file above.';
    }, function (err) {
      tasksMessage.classList.add('error');
      tasksMessage.textContent = 'Could not load the tasks: ' + err.message;
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
      if (task.error) status.title = task.error;
      cell(row, task.filename);
      cell(row, task.kind);
      cell(row, bytes(task.size), 'num');
      cell(row, count(task.rows_read) + (task.rows_rejected ? ' (' + count(task.rows_rejected) + ' rejected)' : ''),
        'num');
      cell(row, task.duration_s != null ? seconds(task.duration_s) : '–', 'num');
      cell(row, when(task.created_at));
      tbody.appendChild(row);
    });
  }

  $('tasks-refresh').addEventListener('click', loadTasks);
  setInterval(function () { if (!document.hidden) loadTasks(); }, TASKS_EVERY_MS);

  // -- movies -------------------------------------------------------------------------------------------
  var filters = $('movie-filters');
  var moviesError = $('movies-error');
  var moviesMessage = $('movies-message');
  var prev = $('movies-prev');
  var next = $('movies-next');
  var moviePage = 1;
  var moviePages = 0;
  var latest = 0; // answers to older requests are dropped when a newer one was sent

  function movieQuery() {
    var params = new URLSearchParams();
    ['year', 'language'].forEach(function (name) {
      var value = filters.elements[name].value.trim();
      if (value) params.set(name, value);
    });
    params.set('sort_by', filters.elements.sort_by.value);
    params.set('order', filters.elements.order.value);
    params.set('limit', filters.elements.limit.value);
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
      renderMovies(page, params);
    }, function (err) {
      if (ticket !== latest) return;
      $('movies-body').textContent = '';
      moviesMessage.textContent = '';
      show(moviesError, 'Could not load movies: ' + err.message);
      moviePages = 0;
      $('movies-page').textContent = 'Page – of –';
      $('movies-total').textContent = '';
      prev.disabled = next.disabled = true;
    }).then(function () {
      if (ticket === latest) $('movies-table').removeAttribute('aria-busy');
    });
  }

  function renderMovies(page, params) {
    var tbody = $('movies-body');
    tbody.textContent = '';
    page.movies.forEach(function (movie) {
      var row = document.createElement('tr');
      cell(row, movie.title || '–', 'title');
      cell(row, movie.release_date ? movie.release_date.slice(0, 10) : '–');
      cell(row, movie.original_language || '–');
      cell(row, movie.vote_average != null ? oneDecimal.format(movie.vote_average) : '–', 'num');
      cell(row, count(movie.vote_count), 'num');
      cell(row, movie.runtime != null ? movie.runtime + ' min' : '–', 'num');
      tbody.appendChild(row);
    });
    moviePages = page.total_pages;
    var filtered = params.has('year') || params.has('language');
    moviesMessage.textContent = page.total_docs ? '' :
      (filtered ? 'No movies match these filters.' : 'No movies yet: upload a movies CSV above.');
    $('movies-page').textContent = 'Page ' + count(page.total_pages ? page.page : 0) + ' of ' +
      count(page.total_pages);
    $('movies-total').textContent = count(page.total_docs) + (page.total_docs === 1 ? ' movie' : ' movies');
    prev.disabled = page.page <= 1;
    next.disabled = page.page >= page.total_pages;
    var sortBy = params.get('sort_by');
    var order = params.get('order') === '-1' ? 'descending' : 'ascending';
    Array.prototype.forEach.call(document.querySelectorAll('#movies-table th'), function (th) {
      if (th.dataset.sort === sortBy) th.setAttribute('aria-sort', order);
      else th.removeAttribute('aria-sort');
    });
  }

  filters.addEventListener('submit', function (event) {
    event.preventDefault();
    moviePage = 1;
    loadMovies();
  });
  ['sort_by', 'order', 'limit'].forEach(function (name) {
    filters.elements[name].addEventListener('change', function () {
      moviePage = 1;
      loadMovies();
    });
  });
  prev.addEventListener('click', function () {
    if (moviePage > 1) { moviePage -= 1; loadMovies(); }
  });
  next.addEventListener('click', function () {
    if (moviePage < moviePages) { moviePage += 1; loadMovies(); }
  });

  loadTasks();
  loadMovies();
}());
