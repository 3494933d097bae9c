// The page's texts for scripts, in the reader's language: the server writes them in a JSON
// block (#page-texts), so no script carries English of its own. text(key, values) fills each
// %(name)s of the text with values[name], a string or a DOM node, and returns the parts in
// order for element.append(...parts).
(() => {
  "use strict";

  const block = document.getElementById("page-texts");
  const texts = block ? JSON.parse(block.textContent) : {};

  window.pageText = (key, values = {}) => {
    const text = texts[key] ?? key;
    return text.split(/%\((\w+)\)s/).map((part, i) => (i % 2 ? values[part] ?? "" : part));
  };
  window.pageString = (key, values = {}) => window.pageText(key, values).join("");
})();
