// Who is signed in: the sign-in form, sign-out, a key offered by a sign-in address, the token kept for the
// tab. The page holds a token from POST /api/v1/auth/token, never a key: a key (typed in the sign-in form,
// or from a sign-in address) is exchanged at once and forgotten. The token is kept in sessionStorage: this
// tab's only, gone when it closes; not localStorage (every tab, for good), not a cookie (a browser would
// send that by itself, to any request another site makes it send).

import { requestToken, FETCH_TIMEOUT_MS, TIMED_OUT, UNREACHABLE } from './api.js';
import { $, say, show, theirs } from './dom.js';

const RANK = { reader: 0, uploader: 1, admin: 2 }; // each role may do what the one before may, and more
const STORED = 'movie-ingest.session'; // the sessionStorage item: {token, name, role, expires}
const EXPIRED = 'Your session has expired; sign in again.';
const SHOWN_CHARS = 25; // of a key shown: `mcat_`, its id and 4 more, as the API lists a key's `prefix`

// A sign-in address (…/#key=<API key>) leaves the address bar before anything else happens (main.js calls
// this first), so the key is not left on the screen or in this tab's history. A fragment is never sent to
// a server, so it reached no access log either. The page then asks before signing in with it (offerKey).
export function takeKeyFromAddress() {
  const key = new URLSearchParams(location.hash.slice(1)).get('key');
  if (key === null) return null;
  history.replaceState(history.state, '', location.pathname + location.search);
  return key.trim();
}

// The key a session's token was issued for (its `sub` claim), or failing that its name and role.
function who(s) {
  try {
    const claims = s.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const sub = JSON.parse(atob(claims)).sub;
    if (typeof sub === 'string' && sub) return sub;
  } catch {
    /* not a JWT this page can read */
  }
  return s.name + '\n' + s.role;
}

function store(s) {
  try {
    sessionStorage.setItem(STORED, JSON.stringify(s));
  } catch {
    /* storage off: the session lasts as long as the page */
  }
}

function unstore() {
  try {
    sessionStorage.removeItem(STORED);
  } catch {
    /* nothing was stored */
  }
}

function restore() {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORED));
    if (s && typeof s.token === 'string' && typeof s.name === 'string' && RANK[s.role] != null) return s;
  } catch {
    /* none, or not ours */
  }
  return null;
}

function keyShown(key) {
  const id = /^mcat_([0-9a-f]{16})/.exec(key);
  const start = theirs(key.slice(0, Math.min(SHOWN_CHARS, Math.floor(key.length / 2))) + '…');
  return id ? ['API key ', theirs('key_' + id[1]), ' (', start, ')'] : ['a value that is not an API key (', start, ')'];
}

// `hooks`, what the rest of the page does when the session changes:
//   signedIn({same, typed}): a session began; `same`: the key whose session expired, back (the page carries
//     on); `typed`: from the form (the focus then moves on), not from a sign-in address or the tab's storage.
//   signedOut(): the session ended; what it was watching stops.
//   forget(): what belonged to the one who signed out goes (their tasks, the task in the panel).
export function createSession({ authOn, hooks }) {
  let session = null; // {token, name, role, expires (ms since the epoch)}; null: signed out
  let lastWho = null; // the key whose session expired: signed in with it again, the page carries on
  let exchanging = 0; // the latest exchange of a key: an older one's answer is dropped
  let offered = null; // a key from the address, until the person answers the page's question

  const body = document.body;
  const signIn = $('sign-in');
  const keyInput = $('sign-in-key');
  const signInButton = $('sign-in-button');
  const signInError = $('sign-in-error');
  const signInNotice = $('sign-in-notice');
  const offer = $('address-key');
  const refuseButton = $('address-key-refuse');

  function may(role) {
    return !!session && (RANK[session.role] || 0) >= RANK[role];
  }

  // A key for a token. `typed`: from the form, not from a sign-in address.
  function exchange(key, typed) {
    const ticket = ++exchanging;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    showSignIn('Signing in…');
    signInButton.disabled = true;
    requestToken(key, controller.signal)
      .then(
        (answer) => {
          if (ticket !== exchanging) return;
          keyInput.value = '';
          const expires = Date.now() + answer.expires_in * 1000;
          begin({ token: answer.access_token, name: String(answer.name), role: String(answer.role), expires }, typed);
        },
        (err) => {
          if (ticket !== exchanging) return;
          showSignIn('');
          const why = controller.signal.aborted ? TIMED_OUT : err instanceof TypeError ? UNREACHABLE : err.message;
          show(signInError, ['Could not sign in: ', theirs(why)]);
          keyInput.focus();
        },
      )
      .finally(() => {
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
    const same = lastWho !== null && lastWho === who(session);
    lastWho = null;
    body.dataset.session = session.role;
    signIn.hidden = true;
    show(signInError, '');
    $('session').hidden = !authOn;
    say($('session-who'), ['Signed in as ', theirs(session.name), ' (' + session.role + ')']);
    $('sections').hidden = false;
    document.querySelectorAll('[data-needs]').forEach((element) => {
      element.hidden = !may(element.dataset.needs);
    });
    $('reader-note').hidden = may('uploader');
    hooks.signedIn({ same, typed });
  }

  // Signed out: only the sign-in form shows. What was typed or chosen elsewhere stays in its (hidden) field.
  function showSignIn(notice) {
    body.dataset.session = 'none';
    $('session').hidden = true;
    $('sections').hidden = true;
    $('reader-note').hidden = true;
    document.querySelectorAll('[data-needs]').forEach((element) => {
      element.hidden = true;
    });
    signIn.hidden = false;
    say(signInNotice, notice);
    show(signInError, '');
  }

  function signOut(notice) {
    session = null;
    unstore();
    hooks.signedOut();
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

  $('sign-out').addEventListener('click', () => {
    lastWho = null;
    ++exchanging;
    signOut('You have signed out.');
    hooks.forget();
  });

  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
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
  function offerKey(key) {
    if (!authOn || !key) return;
    offered = key;
    let which = ['This link signs in with '].concat(keyShown(key));
    which = which.concat(
      session
        ? [
            '. You are signed in as ',
            theirs(session.name),
            ' (' + session.role + '): that session goes on unless you choose the key.',
          ]
        : ['.'],
    );
    say($('address-key-which'), which);
    say(refuseButton, session ? ['Stay signed in as ', theirs(session.name)] : 'Do not sign in');
    offer.hidden = false;
    refuseButton.focus(); // the safe answer is the one Enter gives
  }

  function answerOffer(accepted) {
    const key = offered;
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
      hooks.forget();
    }
    exchange(key, false);
  }

  refuseButton.addEventListener('click', () => answerOffer(false));
  $('address-key-accept').addEventListener('click', () => answerOffer(true));

  // A sign-in address opened in a tab that already shows the page only changes the fragment.
  window.addEventListener('hashchange', () => offerKey(takeKeyFromAddress()));

  // The session the tab kept, if it has not expired; then the question about the address's key, if any.
  function start(addressKey) {
    if (!authOn) {
      begin({ token: null, name: 'anyone (AUTH=false)', role: 'admin', expires: Infinity }, false);
      return;
    }
    const kept = restore();
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

  return { current: () => session, may, expired, start };
}
