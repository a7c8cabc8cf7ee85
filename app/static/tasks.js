// The recent-tasks table: the last ten tasks, refreshed every few seconds while the tab is visible; each
// row's Show button hands its task to the panel (through onShow).

import { $, cell, say, theirs } from './dom.js';
import { bytes, count, percent, seconds, when } from './format.js';

const TASKS_EVERY_MS = 3000;

// `api`: getJSON (api.js); `session`: may() (session.js); `onShow(task)`: a row's Show was pressed.
export function createTasks({ api, session, onShow }) {
  const tasksMessage = $('tasks-message');
  const tbody = $('tasks-body');
  let latest = 0; // as for the movies: an older answer arriving late is dropped

  function load() {
    if (!session.may('uploader')) return; // a reader would be answered 403; signed out, nothing is asked
    const ticket = ++latest;
    return api.getJSON('/api/v1/processes?limit=10').then(
      (page) => {
        if (ticket !== latest) return;
        render(page.processes);
        tasksMessage.classList.remove('error');
        tasksMessage.textContent = page.processes.length ? '' : 'No tasks yet: upload a file above.';
      },
      (err) => {
        if (ticket !== latest || err.signedOut) return;
        tasksMessage.classList.add('error');
        say(tasksMessage, ['Could not load the tasks: ', theirs(err.message)]);
      },
    );
  }

  function render(list) {
    tbody.textContent = '';
    list.forEach((task) => {
      const row = document.createElement('tr');
      row.dataset.taskId = task.task_id;
      const status = cell(
        row,
        task.status + (task.status === 'processing' ? ' ' + percent(task.percent) : ''),
        'status',
      );
      status.dataset.status = task.status;
      if (task.error) {
        const reason = document.createElement('span');
        reason.className = 'reason';
        say(reason, theirs(task.error));
        status.appendChild(reason);
      }
      cell(row, theirs(task.filename), 'file');
      cell(row, task.kind);
      cell(row, bytes(task.size), 'num');
      const rejected = task.rows_rejected ? ' (' + count(task.rows_rejected) + ' rejected)' : '';
      cell(row, count(task.rows_read) + rejected, 'num');
      cell(row, task.duration_s != null ? seconds(task.duration_s) : '–', 'num');
      cell(row, when(task.created_at));
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'secondary small';
      open.textContent = 'Show';
      open.setAttribute('aria-label', 'Show the progress of ' + task.filename);
      open.addEventListener('click', () => onShow(task));
      cell(row, open);
      tbody.appendChild(row);
    });
  }

  // Another person signed in: the last one's tasks go.
  function forget() {
    tbody.textContent = '';
    tasksMessage.textContent = 'Loading…';
  }

  $('tasks-refresh').addEventListener('click', load);
  setInterval(() => {
    if (!document.hidden) load(); // signed in, as uploader
  }, TASKS_EVERY_MS);

  return { load, forget };
}
