// The upload form: a CSV chosen or dropped, checked against the size limit, sent with XMLHttpRequest (its
// upload events give the bytes sent, which fetch() cannot), and the server's refusal explained next to it.
// The panel below the form (progress.js) shows the bytes, then the task.

import { errorText } from './api.js';
import { $, show, theirs } from './dom.js';
import { bytes } from './format.js';

// `session`: current() and expired() (session.js); `progress`: the panel (progress.js); `tasks`: load()
// (tasks.js), as an accepted file is a new task in the list.
export function createUpload({ authOn, maxUploadMb, session, progress, tasks }) {
  const form = $('upload-form');
  const input = $('upload-file');
  const zone = $('drop-zone');
  const button = $('upload-button');
  const uploadError = $('upload-error');

  function describeChosen() {
    const file = input.files && input.files[0];
    show($('upload-chosen'), file ? [theirs(file.name), ', ' + bytes(file.size)] : '');
    show(uploadError, '');
  }

  function refused(file, message) {
    show(uploadError, [theirs(file.name), ' was not accepted: ', theirs(message)]);
    input.focus();
  }

  function upload(file, kind) {
    const sent = session.current();
    if (authOn && !sent) return;
    show(uploadError, '');
    const data = new FormData();
    if (kind) data.append('kind', kind);
    data.append('file', file, file.name);

    progress.sendingFile(file.name);
    button.disabled = true;

    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/upload');
    xhr.setRequestHeader('Accept', 'application/json');
    if (sent && sent.token) xhr.setRequestHeader('Authorization', 'Bearer ' + sent.token);
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) progress.sent(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      button.disabled = false;
      progress.sendingEnded();
      if (xhr.status === 202) {
        const answer = JSON.parse(xhr.responseText);
        progress.accepted(answer.task_id, file.name);
        tasks.load();
        return;
      }
      progress.refused();
      if (xhr.status === 401 && authOn) {
        refused(file, 'Your session had expired; sign in, then press Upload again.');
        session.expired(sent, errorText(xhr.status, xhr.responseText));
        return;
      }
      refused(file, errorText(xhr.status, xhr.responseText));
    });
    xhr.addEventListener('error', () => {
      button.disabled = false;
      progress.sendingEnded();
      progress.refused();
      refused(file, 'The upload did not reach the server, or the connection broke off before it answered.');
    });
    xhr.send(data);
  }

  input.addEventListener('change', describeChosen);

  // Dropping a file anywhere else would make the browser open it and leave the page.
  ['dragover', 'drop'].forEach((type) => {
    window.addEventListener(type, (event) => event.preventDefault());
  });
  ['dragenter', 'dragover'].forEach((type) => {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add('dragging');
    });
  });
  ['dragleave', 'drop'].forEach((type) => {
    zone.addEventListener(type, () => zone.classList.remove('dragging'));
  });
  zone.addEventListener('drop', (event) => {
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    input.files = files;
    describeChosen();
    input.focus();
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const file = input.files && input.files[0];
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

  return {
    clearError: () => show(uploadError, ''),
    focus: () => input.focus(),
  };
}
