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

  // The stream's last word when the sign-in it was opened with ended (a sign-out in another
  // tab, a password change, "sign out everywhere"): say so above the page, with the way back
  // in, and stop retrying a stream that would only answer 401.
  function signedOut(source, event) {
    source.close();
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    const alert = document.createElement("div");
    alert.className = "alert alert-warning";
    alert.id = "signed-out";
    alert.setAttribute("role", "alert");
    const link = document.createElement("a");
    link.className = "alert-link";
    const here = `${location.pathname}${location.search}`;
    link.href = `${data.sign_in_url}?next=${encodeURIComponent(here)}`;
    link.textContent = data.sign_in;
    alert.append(data.message, " ", link);
    document.getElementById("flashes")?.replaceChildren(alert);
    document.dispatchEvent(new CustomEvent("live:session.ended", { detail: data }));
  }

  // Opened once every deferred script has run, so every listener is in place.
  document.addEventListener("DOMContentLoaded", () => {
    const source = new EventSource(url);
    for (const type of (document.body.dataset.streamEvents || "").split(" ")) {
      if (type) source.addEventListener(type, forward);
    }
    source.addEventListener("session.ended", (event) => signedOut(source, event));
  });
})();
