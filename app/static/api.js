// Talking to the JSON API: requests with the session's token, error answers in words, the event-stream
// format, a download's file name. The session is passed in (createApi), never read from a global.

import { count } from './format.js';

export const FETCH_TIMEOUT_MS = 10000; // a request that hangs longer is abandoned, so polling and reloads go on
export const TIMED_OUT = 'The server did not answer within ' + count(FETCH_TIMEOUT_MS / 1000) + ' s.';
export const UNREACHABLE = 'The server could not be reached.';

// The message of an error answer ({"error": {"code", "message"}}), or words for one without a body.
export function errorText(status, text) {
  try {
    const parsed = JSON.parse(text);
    if (parsed && parsed.error && parsed.error.message) return parsed.error.message;
  } catch {
    /* not JSON: a proxy's page, say */
  }
  if (status === 413) return 'The file is too large for the server.';
  return 'The server answered ' + status + ' without an explanation.';
}

// An API key for a token ({access_token, name, role, expires_in}). The key goes in this one request's
// header and nowhere else; the caller forgets it.
export function requestToken(key, signal) {
  return fetch('/api/v1/auth/token', {
    method: 'POST',
    cache: 'no-store',
    signal,
    headers: { Accept: 'application/json', Authorization: 'Bearer ' + key },
  }).then((response) =>
    response.text().then((text) => {
      if (!response.ok) throw new Error(errorText(response.status, text));
      return JSON.parse(text);
    }),
  );
}

function signedOutError() {
  const err = new Error('Not signed in.');
  err.signedOut = true;
  return err;
}

// `session`: current() is {token, name, role, expires} or null; expired(sent, message) ends `sent` if it is
// still the current one. `authOn` false (AUTH=false): the API asks for no credentials, a 401 ends nothing.
export function createApi({ authOn, session }) {
  // fetch() with the token, in an Authorization header (never in a URL: URLs reach access logs). A 401 ends
  // the session (the token expired, or its key was revoked), unless it answers a request of an older
  // session. Signed out, nothing is sent. Either way the promise rejects with an error whose `signedOut` is
  // true: callers leave those to the sign-in form.
  function send(url, options) {
    const sent = session.current();
    if (authOn && !sent) return Promise.reject(signedOutError());
    options.headers = options.headers || {};
    if (sent && sent.token) options.headers.Authorization = 'Bearer ' + sent.token;
    return fetch(url, options).then((response) => {
      if (response.status !== 401 || !authOn) return response;
      return response.text().then(
        (text) => {
          session.expired(sent, errorText(401, text));
          throw signedOutError();
        },
        () => {
          session.expired(sent, '');
          throw signedOutError();
        },
      );
    });
  }

  function getJSON(url) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    function unreachable(err) {
      if (err && err.signedOut) throw err;
      throw new Error(controller.signal.aborted ? TIMED_OUT : UNREACHABLE);
    }
    return send(url, { headers: { Accept: 'application/json' }, signal: controller.signal })
      .then(
        (response) =>
          response.text().then((text) => {
            if (!response.ok) throw new Error(errorText(response.status, text));
            return JSON.parse(text);
          }, unreachable),
        unreachable,
      )
      .finally(() => clearTimeout(timer));
  }

  return { send, getJSON };
}

// The text/event-stream format: `field: value` lines; a blank line dispatches the event gathered so far.
// Lines end in CR, LF or CRLF; one starting with a colon is a comment (the server's keep-alive).
// Resolves when the stream ends; rejects when it breaks off, or an event cannot be handled.
export function readEvents(reader, dispatch, setRetry) {
  const decoder = new TextDecoder();
  let buffer = '';
  let type = '';
  let data = [];

  function line(text) {
    if (text === '') {
      if (data.length) dispatch(type || 'message', data.join('\n'));
      type = '';
      data = [];
      return;
    }
    if (text.charAt(0) === ':') return;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.charAt(0) === ' ') value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'retry' && /^[0-9]+$/.test(value)) setRetry(Number(value));
    // `id` and other fields: this server sends none the page needs
  }

  return new Promise((resolve, reject) => {
    function pump() {
      reader
        .read()
        .then((chunk) => {
          if (chunk.done) {
            resolve(); // an event not ended by a blank line is dropped, as the format says
            return;
          }
          buffer += decoder.decode(chunk.value, { stream: true });
          const held = buffer.slice(-1) === '\r' ? '\r' : ''; // perhaps the first half of a CRLF
          const lines = buffer.slice(0, buffer.length - held.length).split(/\r\n|\r|\n/);
          buffer = lines.pop() + held;
          lines.forEach(line);
          pump();
        })
        .catch(reject);
    }
    pump();
  });
}

// The file name of a Content-Disposition header: RFC 6266's filename*=UTF-8''… first, else filename="…".
export function attachmentName(header) {
  if (!header) return '';
  const extended = /filename\*\s*=\s*utf-8'[^']*'([^;\s]+)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[1]);
    } catch {
      /* badly encoded: the plain name instead */
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(header);
  if (!plain) return '';
  return plain[1] != null ? plain[1].replace(/\\(.)/g, '$1') : plain[2];
}
