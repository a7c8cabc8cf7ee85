// The content team's page: sign-in, upload with live progress, recent tasks, the movie catalogue. Plain
// browser JavaScript in ES modules, no build step: one module per feature, each given what it uses (the
// session, the API, the modules it tells of a change) when it is made here, none reading another's state.

import { createApi } from './api.js';
import { createCatalogue } from './catalogue.js';
import { createProgress } from './progress.js';
import { createSession, takeKeyFromAddress } from './session.js';
import { createTasks } from './tasks.js';
import { createUpload } from './upload.js';

const addressKey = takeKeyFromAddress(); // first of all: the key leaves the address bar (session.js)

const data = document.body.dataset;
const maxUploadMb = Number(data.maxUploadMb) || 0;
const cacheTtl = Number(data.cacheTtl) || 5;
const authOn = data.auth !== 'off'; // AUTH=false: the API asks for no credentials, nor does the page

const session = createSession({
  authOn,
  hooks: {
    signedIn({ same, typed }) {
      if (!same) forget();
      if (session.may('uploader')) {
        tasks.load();
        progress.resume(); // the same person again: the panel's task is watched on
      }
      catalogue.resume();
      if (typed) (session.may('uploader') ? upload : catalogue).focus();
    },
    signedOut: () => progress.interrupt(),
    forget,
  },
});
const api = createApi({ authOn, session });
const progress = createProgress({
  authOn,
  api,
  session,
  hooks: { changed: () => tasks.load(), moviesAdded: () => catalogue.newMovies() },
});
const tasks = createTasks({ api, session, onShow: show });
const catalogue = createCatalogue({ api, session, cacheTtl });
const upload = createUpload({ authOn, maxUploadMb, session, progress, tasks });

// What belonged to the one who signed out: their tasks, and the task in the panel.
function forget() {
  progress.forget();
  upload.clearError();
  tasks.forget();
}

// A task from the list, in the panel; not while the panel shows a file being sent (the button works after).
function show(task) {
  if (progress.isSending()) return;
  upload.clearError();
  progress.open(task.task_id, task.filename);
}

session.start(addressKey);
