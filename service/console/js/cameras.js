// Cameras: subscribe, watch their status and their predictions arrive live, unsubscribe. URLs are
// shown only as the server redacts them.

import { call, follow } from "./api.js";
import { h, percent, showError, sparkline } from "./dom.js";

const EVERY_MS = 3000;
const HISTORY = 60; // clips in a sparkline
const HISTORY_S = 120;

let page;
let timer = null;
const known = new Map(); // id -> the camera's status in the latest list
// Per camera: the SSE reader's abort controller, its luma history and its latest prediction.
const live = new Map();

function feed(id) {
  const entry = { abort: new AbortController(), luma: [], latest: null };
  live.set(id, entry);
  const since = Date.now() / 1000 - HISTORY_S;
  const base = `/v1/streams/${encodeURIComponent(id)}/events`;
  follow(
    (last) => `${base}?since=${last ? last.start : since}`,
    (type, result) => {
      if (type !== "prediction") return;
      entry.luma = [...entry.luma, result.illumination.luma_mean].slice(-HISTORY);
      entry.latest = result;
      render(id);
    },
    entry.abort.signal,
  );
  return entry;
}

function prediction(result) {
  if (!result) return h("p", { class: "latest muted" }, "Waiting for the first clip…");
  const top = result.top[0];
  const when = new Date(result.end * 1000).toLocaleTimeString();
  return h(
    "p",
    { class: "latest" },
    result.error ? result.error : [h("strong", {}, top.label), ` ${percent(top.score)}`],
    h("span", { class: "muted" }, ` at ${when}`),
    result.integrity.reconnect ? h("span", { class: "badge" }, "after reconnect") : null,
  );
}

function card(camera) {
  const entry = live.get(camera.id) ?? feed(camera.id);
  const fps = camera.fps == null ? "—" : camera.fps.toFixed(1);
  const remove = async () => {
    try {
      await call("DELETE", `/v1/streams/${encodeURIComponent(camera.id)}`);
      refresh();
    } catch (error) {
      showError(page, error.message);
    }
  };
  return h(
    "li",
    { class: "card camera", "data-id": camera.id },
    h(
      "div",
      { class: "card-head" },
      h("h3", {}, camera.name || camera.id),
      h("span", { class: "badge", "data-state": camera.status }, camera.status),
    ),
    h("p", { class: "url" }, camera.url),
    h(
      "p",
      { class: "meta" },
      `${fps} fps · ${camera.reconnects} reconnects`,
      camera.last_error ? ` · last error: ${camera.last_error}` : "",
    ),
    h(
      "div",
      { class: "luma" },
      h("span", { class: "muted" }, "luma"),
      sparkline(entry.luma, `luma of the last ${entry.luma.length} clips`),
      h("span", {}, entry.luma.length ? entry.luma.at(-1).toFixed(1) : "—"),
    ),
    prediction(entry.latest),
    h("button", { type: "button", class: "secondary", onclick: remove }, "Remove"),
  );
}

function render(id) {
  const old = page.querySelector(`.camera[data-id="${CSS.escape(id)}"]`);
  if (old && known.has(id)) old.replaceWith(card(known.get(id)));
}

async function refresh() {
  try {
    const list = await call("GET", "/v1/streams");
    known.clear();
    for (const camera of list) known.set(camera.id, camera);
    for (const [id, entry] of live) {
      if (!known.has(id)) {
        entry.abort.abort();
        live.delete(id);
      }
    }
    page.querySelector(".camera-list").replaceChildren(...list.map(card));
    if (!list.length) {
      page.querySelector(".camera-list").append(h("li", { class: "muted" }, "No cameras yet."));
    }
  } catch (error) {
    showError(page, error.message);
  }
}

async function add(event) {
  event.preventDefault();
  const form = event.target;
  showError(page, "");
  try {
    const { url, name } = form.elements;
    await call("POST", "/v1/streams", { url: url.value.trim(), name: name.value.trim() });
    form.reset();
    refresh();
  } catch (error) {
    showError(page, error.message);
  }
}

export const cameras = {
  init(section) {
    page = section;
    section.querySelector("#camera-form").addEventListener("submit", add);
  },
  show() {
    refresh();
    timer = setInterval(refresh, EVERY_MS);
  },
  hide() {
    clearInterval(timer);
    for (const entry of live.values()) entry.abort.abort();
    live.clear();
  },
};
