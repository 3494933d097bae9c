// Every <time datetime="…"> in the reader's own timezone and the page's language: "3 minutes ago" for
// recent times, the full local date and time for older ones and on hover. The UTC text the
// server wrote stays for readers without JavaScript. <time data-style="clock"> shows the local
// clock time only ("Trying again at 14:32"). Times added later (task cards updated live) are
// converted as they arrive, and relative ones are kept current.
(() => {
  "use strict";

  const RECENT_MS = 7 * 24 * 3600 * 1000;
  const REFRESH_MS = 30 * 1000;
  const STEPS = [["second", 60], ["minute", 60], ["hour", 24], ["day", 7]];
  const lang = document.documentElement.lang || undefined; // the page's, not the browser's
  const full = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
  const clock = new Intl.DateTimeFormat(lang, { timeStyle: "short" });
  const relative = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });

  function parse(text) {
    // Python writes microseconds; not every engine reads more than milliseconds.
    const date = new Date((text || "").replace(/(\.\d{3})\d+/, "$1"));
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function ago(deltaMs) {
    let value = deltaMs / 1000;
    for (const [unit, size] of STEPS) {
      if (Math.abs(value) < size - 0.5) return relative.format(Math.round(value), unit);
      value /= size;
    }
    return relative.format(Math.round(value), "week");
  }

  function show(element) {
    const date = parse(element.getAttribute("datetime"));
    if (!date) return;
    element.title = full.format(date);
    if (element.dataset.style === "clock") {
      element.textContent = clock.format(date);
      return;
    }
    const delta = date.getTime() - Date.now();
    element.textContent = Math.abs(delta) < RECENT_MS ? ago(delta) : full.format(date);
  }

  function showWithin(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    if (node.matches("time[datetime]")) show(node);
    node.querySelectorAll("time[datetime]").forEach(show);
  }

  showWithin(document.body);
  new MutationObserver((changes) => {
    for (const change of changes) change.addedNodes.forEach(showWithin);
  }).observe(document.body, { childList: true, subtree: true });
  setInterval(() => showWithin(document.body), REFRESH_MS);
})();
