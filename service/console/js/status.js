// The status bar: readiness, inference backend, serving model and queue depth, from /readyz
// (open to probes, so it needs no key).

const EVERY_MS = 3000;

function set(name, text, state) {
  const field = document.querySelector(`[data-status=${name}]`);
  field.textContent = text;
  if (state) field.dataset.state = state;
}

async function refresh() {
  try {
    const response = await fetch("/readyz");
    const { status, checks, auth } = await response.json();
    set("ready", status === "ready" ? "ready" : "not ready", status);
    set("backend", checks.inference?.backend ?? "—");
    set("model", checks.model?.version ?? "none");
    const depth = checks.queue?.depth;
    set("queue", depth ? `${depth.files} files, ${depth.live} live` : "unreachable");
    const open = document.querySelector("[data-status=auth]");
    open.hidden = auth !== "open";
    open.textContent = "Open: no API keys configured";
  } catch {
    set("ready", "unreachable", "down");
  }
}

export function startStatus() {
  refresh();
  setInterval(refresh, EVERY_MS);
}
