// Putting words in the page. Everything from the server goes in with textContent (never innerHTML), so a
// title or a file name can never become markup.

export function $(id) {
  return document.getElementById(id);
}

// Text that came from a person (a file name, a title, a reason), isolated in a <bdi>: a right-to-left
// override in a file name then cannot reorder the sentence or the cells around it.
export function theirs(text) {
  const bdi = document.createElement('bdi');
  bdi.textContent = text == null ? '' : String(text);
  return bdi;
}

// Fill an element with a sentence: strings are our words, nodes (from theirs()) are put in as they are.
export function say(element, parts) {
  element.textContent = '';
  (Array.isArray(parts) ? parts : [parts || '']).forEach((part) => {
    element.appendChild(typeof part === 'string' ? document.createTextNode(part) : part);
  });
}

// A message element shows only while it has something to say.
export function show(element, parts) {
  say(element, parts);
  element.hidden = !element.textContent;
}

export function cell(row, parts, className) {
  const td = document.createElement('td');
  say(td, parts);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}
