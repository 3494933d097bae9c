// A small card about a user when a name (a.user-link) is hovered or focused: loaded from
// /user/<name>/popup (an HTML fragment the server renders and escapes), placed under the
// name (next in the Tab order), closed on leaving it, on focus moving past it, or with
// Escape. Its follow button is a plain form: it works without this script too, from the
// profile page.
(() => {
  "use strict";

  const OPEN_DELAY_MS = 300;
  const CLOSE_DELAY_MS = 200;
  let card = null;
  let openTimer = null;
  let closeTimer = null;

  function close() {
    clearTimeout(openTimer);
    card?.remove();
    card = null;
  }

  function scheduleClose() {
    clearTimeout(closeTimer);
    closeTimer = setTimeout(close, CLOSE_DELAY_MS);
  }

  async function open(link) {
    const name = new URL(link.href).pathname.split("/")[2];
    const here = window.location.pathname + window.location.search;
    const url = `/user/${name}/popup?next=${encodeURIComponent(here)}`;
    const response = await fetch(url, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    close();
    card = document.createElement("div");
    card.className = "user-popup card shadow p-3";
    card.setAttribute("role", "dialog");
    card.setAttribute("aria-label", pageString("popup.about", { name: decodeURIComponent(name) }));
    card.innerHTML = await response.text(); // the server's own escaped fragment
    card.addEventListener("mouseenter", () => clearTimeout(closeTimer));
    card.addEventListener("mouseleave", scheduleClose);
    // Right after the name in the document, so that Tab goes from the name into the card.
    link.after(card);
    const box = link.getBoundingClientRect();
    const origin = (card.offsetParent || document.body).getBoundingClientRect();
    card.style.left = `${box.left - origin.left}px`;
    card.style.top = `${box.bottom - origin.top + 4}px`;
  }

  function later(link) {
    clearTimeout(openTimer);
    clearTimeout(closeTimer);
    openTimer = setTimeout(() => open(link), OPEN_DELAY_MS);
  }

  document.addEventListener("mouseover", (event) => {
    const link = event.target.closest?.("a.user-link");
    if (link) later(link);
  });
  document.addEventListener("mouseout", (event) => {
    if (event.target.closest?.("a.user-link")) scheduleClose();
  });
  document.addEventListener("focusin", (event) => {
    const link = event.target.closest?.("a.user-link");
    if (link) later(link);
    else if (card && !card.contains(event.target)) close(); // focus moved on, past the card
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
})();
