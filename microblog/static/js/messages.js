// The unread badge in the navigation bar follows the reader live: each message.unread event
// (from live.js) carries the count as it now is, in every open tab.
(() => {
  "use strict";

  const badge = document.getElementById("unread-badge");
  if (!badge) return;
  document.addEventListener("live:message.unread", (event) => {
    const count = Number(event.detail.count) || 0;
    badge.querySelector(".unread-count").textContent = String(count);
    badge.hidden = count === 0;
  });
})();
