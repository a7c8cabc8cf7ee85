// The movie catalogue: the filters as last applied, the page shown, the pager, and a reload once the
// server's cache has let go of the pages asked for before a movies upload completed.

import { $, cell, show, theirs } from './dom.js';
import { count, decimal } from './format.js';

// `api`: getJSON (api.js); `session`: may() (session.js), for the words of an empty catalogue;
// `cacheTtl`: seconds the server keeps a movie page (CACHE_TTL).
export function createCatalogue({ api, session, cacheTtl }) {
  const filters = $('movie-filters');
  const moviesError = $('movies-error');
  const moviesMessage = $('movies-message');
  const table = $('movies-table');
  const prev = $('movies-prev');
  const next = $('movies-next');
  let applied = null; // the filters as last applied: the pager keeps to these, not to what is typed since
  let moviePage = 1;
  let moviePages = 0;
  let latest = 0; // answers to older requests are dropped when a newer one was sent
  let newMoviesDue = null; // a movies upload completed: the timer of the reload once the server's cache expired

  function applyFilters() {
    applied = {};
    ['year', 'language', 'sort_by', 'order', 'limit'].forEach((name) => {
      applied[name] = filters.elements[name].value.trim();
    });
    moviePage = 1;
    load();
  }

  function query() {
    const params = new URLSearchParams();
    Object.keys(applied).forEach((name) => {
      if (applied[name]) params.set(name, applied[name]);
    });
    params.set('page', String(moviePage));
    return params;
  }

  function load() {
    const params = query();
    const ticket = ++latest;
    table.setAttribute('aria-busy', 'true');
    return api
      .getJSON('/api/v1/movies?' + params.toString())
      .then(
        (page) => {
          if (ticket !== latest) return;
          show(moviesError, '');
          if (page.page > page.total_pages && page.total_pages > 0) {
            // Fewer pages than when this one was asked for (the data changed): show the last one there is.
            moviePage = page.total_pages;
            load();
            return;
          }
          render(page, params);
        },
        (err) => {
          if (ticket !== latest || err.signedOut) return;
          $('movies-body').textContent = '';
          moviesMessage.textContent = '';
          show(moviesError, ['Could not load movies: ', theirs(err.message)]);
          moviePages = 0;
          $('movies-page').textContent = 'Page – of –';
          $('movies-total').textContent = '';
          setPager(true, true);
        },
      )
      .then(() => {
        if (ticket === latest) table.removeAttribute('aria-busy');
      });
  }

  // Disabling the focused button would drop the keyboard focus on <body>: it moves to the other one.
  function setPager(prevOff, nextOff) {
    const focused = document.activeElement;
    prev.disabled = prevOff;
    next.disabled = nextOff;
    if (focused === next && nextOff && !prevOff) prev.focus();
    else if (focused === prev && prevOff && !nextOff) next.focus();
  }

  function render(page, params) {
    const tbody = $('movies-body');
    tbody.textContent = '';
    page.movies.forEach((movie) => {
      const row = document.createElement('tr');
      cell(row, movie.title ? theirs(movie.title) : '–', 'title');
      cell(row, movie.release_date ? movie.release_date.slice(0, 10) : '–');
      cell(row, movie.original_language ? theirs(movie.original_language) : '–');
      cell(row, movie.vote_average != null ? decimal(movie.vote_average) : '–', 'num');
      cell(row, count(movie.vote_count), 'num');
      cell(row, movie.runtime != null ? movie.runtime + ' min' : '–', 'num');
      tbody.appendChild(row);
    });
    moviePages = page.total_pages;
    const filtered = params.has('year') || params.has('language');
    const empty = filtered
      ? 'No movies match these filters.'
      : session.may('uploader')
        ? 'No movies yet: upload a movies CSV above.'
        : 'No movies yet.';
    moviesMessage.textContent = page.total_docs ? '' : newMoviesDue ? 'Loading the new movies…' : empty;
    const pages = Math.max(page.total_pages, 1); // no results is still one (empty) page
    $('movies-page').textContent = 'Page ' + count(Math.min(page.page, pages)) + ' of ' + count(pages);
    $('movies-total').textContent = count(page.total_docs) + (page.total_docs === 1 ? ' movie' : ' movies');
    setPager(page.page <= 1, page.page >= page.total_pages);
    const sortBy = params.get('sort_by');
    const order = params.get('order') === '-1' ? 'descending' : 'ascending';
    table.querySelectorAll('th').forEach((th) => {
      if (th.dataset.sort === sortBy) th.setAttribute('aria-sort', order);
      else th.removeAttribute('aria-sort');
    });
  }

  // After a movies upload: the server caches each page for cacheTtl seconds, so a page asked for before
  // the upload can come back unchanged until then; it is asked for again once that has run out.
  function newMovies() {
    clearTimeout(newMoviesDue);
    newMoviesDue = setTimeout(
      () => {
        newMoviesDue = null;
        load();
      },
      (cacheTtl + 0.5) * 1000,
    );
    load();
  }

  // Signed in: the filters and page as they were before a session ended, else the filters as they stand.
  function resume() {
    if (applied) load();
    else applyFilters();
  }

  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    applyFilters();
  });
  ['sort_by', 'order', 'limit'].forEach((name) => {
    filters.elements[name].addEventListener('change', applyFilters);
  });
  prev.addEventListener('click', () => {
    if (moviePage > 1) {
      moviePage -= 1;
      load();
    }
  });
  next.addEventListener('click', () => {
    if (moviePage < moviePages) {
      moviePage += 1;
      load();
    }
  });

  return { resume, newMovies, focus: () => $('movie-year').focus() };
}
