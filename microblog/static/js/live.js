// The page's one live stream: every event meant for the signed-in user arrives here and is
// handed on as a DOM event "live:<type>" on the document (event.detail holds its data), so
// each feature's script listens for its own types (tasks.js: task.*, messages.js:
// message.unread) without opening a stream of its own. The stream resumes after the point
// the page was rendered at (in its URL), then after the last event it delivered.
(() => {
  "use strict";

  const url = document.body.dataset.streamUrl;
  if (!url || !window.EventSource) return;

  function forward(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // not an event of ours
    }
    document.dispatchEvent(new CustomEvent(`live:${event.type}`, { detail: data }));
  }

  // Opened once every deferred script has run, so every listener is in place.
  document.addEventListener("DOMContentLoaded", () => {
    const source = new EventSource(url);
    for (const type of (document.body.dataset.streamEvents || "").split(" ")) {
      if (type) source.addEventListener(type, forward);
    }
  });
})();
