// Keep the operators' task table live from the operators' event stream (every user's events).
// Rows on the page are updated in place; a task that is not on the page is announced by a link.
(function () {
  "use strict";

  const table = document.getElementById("admin-tasks");
  const BADGE = {
    queued: "text-bg-secondary",
    running: "text-bg-primary",
    succeeded: "text-bg-success",
    failed: "text-bg-danger",
    cancelled: "text-bg-light",
  };

  function showProgress(row, progress) {
    const bar = row.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(progress));
    window.setBarWidth(bar.querySelector(".progress-bar"), progress); // tasks.js
  }

  function render(task) {
    const row = table.querySelector(`tr[data-task-id="${CSS.escape(task.task_id)}"]`);
    if (!row) {
      if (task.status === "queued") document.getElementById("new-tasks").hidden = false;
      return;
    }
    row.dataset.status = task.status;
    const badge = row.querySelector(".task-status");
    badge.className = `badge task-status ${BADGE[task.status] || "text-bg-secondary"}`;
    badge.textContent = pageString(`status.${task.status}`);
    showProgress(row, task.progress);
    const fill = row.querySelector(".progress-bar");
    fill.classList.toggle("bg-success", task.status === "succeeded");
    fill.classList.toggle("bg-danger", task.status === "failed");
    fill.classList.toggle("bg-secondary", task.status === "cancelled");
    const count = (n) => Number(n).toLocaleString(document.documentElement.lang || undefined);
    const ofTotal = { done: count(task.done), total: count(task.total) };
    row.querySelector(".task-progress-text").textContent = task.total
      ? `${task.progress}% · ${pageString("admin.done_of_total", ofTotal)}`
      : `${task.progress}%`;
    row.querySelector(".task-attempts").textContent = String(task.attempt);
    row.querySelector(".task-error").textContent = task.error || "";
    row.querySelector(".admin-cancel").hidden = !["queued", "running"].includes(task.status);
    row.querySelector(".admin-retry").hidden = !["failed", "cancelled"].includes(task.status);
  }

  if (!table) return;
  const url = table.dataset.streamUrl;
  if (url && window.EventSource) {
    const source = new EventSource(url);
    const onEvent = (event) => render(JSON.parse(event.data));
    source.addEventListener("task.progress", onEvent);
    source.addEventListener("task.finished", onEvent);
  }
})();
