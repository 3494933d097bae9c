// Keep the task cards live: the page's stream (live.js) brings task.* events that move the
// progress bars. The page was rendered from the Task table; events only bring it up to date.
(function () {
  "use strict";

  const section = document.getElementById("tasks");
  const template = document.getElementById("task-template");
  // A card's state stays at least this long before a later progress event replaces it, so
  // that a short job reads "Waiting to start", then its end, not a flicker of numbers. Its
  // end shows at once.
  const MIN_STATE_MS = 600;
  const STATE_TEXT = ["queued", "succeeded", "failed", "cancelled"];
  const FINAL = ["succeeded", "failed", "cancelled"];

  function shownCard(taskId) {
    return section.querySelector(`[data-task-id="${CSS.escape(taskId)}"]`);
  }

  function cardFor(task) {
    let card = shownCard(task.task_id);
    if (!card) {
      card = template.content.firstElementChild.cloneNode(true);
      card.dataset.taskId = task.task_id;
      const url = section.dataset.taskUrl.replace("TASK_ID", encodeURIComponent(task.task_id));
      for (const form of card.querySelectorAll("form")) {
        form.action = `${url}/${form.dataset.action}`;
        form.addEventListener("submit", act);
      }
      section.prepend(card);
    }
    return card;
  }

  function render(task) {
    const card = cardFor(task);
    const final = FINAL.includes(task.status);
    const shown = Number(card.querySelector(".progress").getAttribute("aria-valuenow"));
    // Events can only move a running bar forward; a restarted job starts over only when final.
    const progress = final || task.progress >= shown ? task.progress : shown;
    card.dataset.status = task.status;
    card.dataset.name = task.name;
    card.querySelector(".task-description").textContent = task.description;
    // The counts ("51 of 300 posts") are the event's, so only with its own progress.
    const counts = progress === task.progress && task.counts;
    card.querySelector(".task-state").textContent = STATE_TEXT.includes(task.status)
      ? pageString(`task.${task.status}`)
      : counts || `${progress}%`;
    const bar = card.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(progress));
    bar.setAttribute("aria-label", task.description);
    const fill = card.querySelector(".progress-bar");
    setWidth(fill, progress);
    fill.classList.toggle("progress-bar-striped", !final);
    fill.classList.toggle("progress-bar-animated", !final);
    fill.classList.toggle("bg-success", task.status === "succeeded");
    fill.classList.toggle("bg-danger", task.status === "failed");
    fill.classList.toggle("bg-secondary", task.status === "cancelled");
    card.classList.toggle("border-danger", task.status === "failed");
    card.querySelector(".task-cancel").hidden = final;
    card.querySelector(".task-retry").hidden = !["failed", "cancelled"].includes(task.status);
    card.querySelector(".task-dismiss").hidden = !final;
    renderFinished(card.querySelector(".task-finished"), task);
    renderResult(card.querySelector(".task-result"), task);
    updateStartButton(task, final);
    card.dataset.shownAt = String(performance.now());
  }

  // Progress events wait their turn (MIN_STATE_MS); the newest one waiting is shown.
  const waiting = new Map();

  function onProgress(task) {
    const card = shownCard(task.task_id);
    const wait = card ? Number(card.dataset.shownAt || 0) + MIN_STATE_MS - performance.now() : 0;
    if (waiting.has(task.task_id)) {
      waiting.get(task.task_id).task = task;
    } else if (wait > 0) {
      const entry = { task };
      entry.timer = setTimeout(() => {
        waiting.delete(task.task_id);
        render(entry.task);
      }, wait);
      waiting.set(task.task_id, entry);
    } else {
      render(task);
    }
  }

  // A bar's width is a class (pct-0 … pct-100), as the server renders it for pages without
  // scripts: the CSP refuses inline styles. The operators' page (admin.js) sets its bars so too.
  function setWidth(fill, progress) {
    for (const name of [...fill.classList]) if (name.startsWith("pct-")) fill.classList.remove(name);
    fill.classList.add(`pct-${Math.max(0, Math.min(100, Math.round(progress)))}`);
  }
  window.setBarWidth = setWidth;

  function renderFinished(line, task) {
    line.replaceChildren();
    if (!task.finished_at) return;
    const time = document.createElement("time");
    time.dateTime = task.finished_at;
    time.textContent = `${task.finished_at.slice(0, 16).replace("T", " ")} UTC`;
    line.append(...pageText("task.finished", { time }));
    if (task.summary) {
      const summary = document.createElement("span");
      summary.className = "task-summary";
      summary.textContent = task.summary;
      line.append(" · ", summary);
    }
  }

  function renderResult(result, task) {
    result.replaceChildren();
    if (task.status === "succeeded" && typeof task.url === "string" && task.url.startsWith("/")) {
      const link = document.createElement("a");
      link.className = "task-download";
      link.href = task.url;
      link.textContent = task.result_label;
      result.append(link);
    } else if (task.status === "failed") {
      const error = document.createElement("span");
      error.className = "text-danger task-error";
      error.textContent = task.error || pageString("task.failed_reason");
      result.append(error);
    } else if (task.status === "cancelled" && task.error) {
      const reason = document.createElement("span");
      reason.className = "text-body-secondary task-error"; // who cancelled it, if not its user
      reason.textContent = task.error;
      result.append(reason);
    } else if (task.retry_at && !FINAL.includes(task.status)) {
      result.append(waitingNote(task));
    }
  }

  // "The mail server is unreachable. Trying again at 14:32 (attempt 3 of 13).": times.js
  // puts the time in the reader's own clock and language.
  function waitingNote(task) {
    const note = document.createElement("span");
    note.className = "text-warning-emphasis task-waiting";
    const time = document.createElement("time");
    time.dateTime = task.retry_at;
    time.dataset.style = "clock";
    time.textContent = `${task.retry_at.slice(11, 16)} UTC`;
    const attempt = String(task.attempt + 1);
    const retrying = task.max_attempts
      ? pageText("task.retrying", { time, attempt, attempts: String(task.max_attempts) })
      : pageText("task.retrying_open", { time, attempt });
    note.append(task.error || pageString("task.waiting"), " ", ...retrying);
    return note;
  }

  function updateStartButton(task, final) {
    const button = document.querySelector(`form[data-job="${CSS.escape(task.name)}"] button`);
    if (button) button.disabled = !final;
  }

  // The server's rule (jobs/models.py: tasks_to_show), kept live: of each job type one
  // finished card, the newest, beside the results not yet opened. A card stays until an
  // event moves it; a reload shows the same, on the pages that show finished cards.
  function onFinished(task) {
    clearTimeout(waiting.get(task.task_id)?.timer);
    waiting.delete(task.task_id);
    render(task);
    for (const other of section.querySelectorAll(".task")) {
      const older = other.dataset.taskId !== task.task_id && other.dataset.name === task.name;
      const result = other.dataset.status === "succeeded" && other.querySelector(".task-download");
      if (older && FINAL.includes(other.dataset.status) && !result) other.remove();
    }
  }

  function showFlash(message, level) {
    const flashes = document.getElementById("flashes");
    const alert = document.createElement("div");
    // Every answer names its level; one that does not is a failure, never left unstyled.
    alert.className = `alert alert-${level || "danger"} alert-dismissible fade show`;
    alert.setAttribute("role", "alert");
    alert.textContent = message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close";
    close.dataset.bsDismiss = "alert";
    close.setAttribute("aria-label", pageString("close"));
    alert.append(close);
    flashes.replaceChildren(alert);
  }

  // Post a form as a script would (CSRF header, JSON answer); resolve to {response, body}.
  function post(form) {
    return fetch(form.action, {
      method: "POST",
      headers: { "X-CSRFToken": form.elements.csrf_token.value, Accept: "application/json" },
      credentials: "same-origin",
    }).then((response) => response.json().then((body) => ({ response, body })));
  }

  // Start a job without leaving the page; without JavaScript the form posts as usual. Its
  // card is the answer (a flash would go stale as the card moves on); a refusal is a flash.
  function startJob(event) {
    event.preventDefault();
    const button = event.currentTarget.querySelector("button");
    button.disabled = true;
    post(event.currentTarget)
      .then(({ response, body }) => {
        if (response.ok && body.task_id) return showCard(body);
        showFlash(body.message, body.level);
        if (!response.ok && response.status !== 409) button.disabled = false;
      })
      .catch(() => {
        showFlash(pageString("task.not_started"), "danger");
        button.disabled = false;
      });
  }

  // A started task's card, from the Task table, for when its first event is late or lost
  // (events bring it up to date, never back); the answer's message if even that fails.
  function showCard(started) {
    if (!section) return showFlash(started.message, started.level);
    const url = section.dataset.taskUrl.replace("TASK_ID", encodeURIComponent(started.task_id));
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(response)))
      .then((task) => {
        if (!shownCard(task.task_id)) (FINAL.includes(task.status) ? onFinished : render)(task);
      })
      .catch(() => showFlash(started.message, started.level));
  }

  // Cancel, try again or close without leaving the page; the stream tells every tab. The
  // cards show what was done; a refusal ("too late to cancel") is a flash.
  function act(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const card = form.closest(".task");
    const action = form.dataset.action;
    form.querySelector("button").disabled = true;
    post(form)
      .then(({ response, body }) => {
        if (!response.ok) showFlash(body.message, body.level);
        // A closed card goes; after "Try again" the new task arrives as a card of its own.
        if (response.ok && (action === "retry" || action === "dismiss")) card.remove();
        if (response.ok && action === "retry" && body.task_id) showCard(body);
      })
      .catch(() => showFlash(pageString("unreachable"), "danger"))
      .finally(() => {
        form.querySelector("button").disabled = false;
      });
  }

  for (const action of document.querySelectorAll("#tasks .task form")) {
    action.addEventListener("submit", act);
  }

  for (const form of document.querySelectorAll("form[data-job]")) {
    form.addEventListener("submit", startJob);
  }

  if (section) {
    document.addEventListener("live:task.progress", (event) => onProgress(event.detail));
    document.addEventListener("live:task.finished", (event) => onFinished(event.detail));
    document.addEventListener("live:task.dismissed", (event) => {
      const { task_id: id } = event.detail;
      shownCard(id)?.remove();
    });
  }
})();
