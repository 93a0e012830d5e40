// Cameras: subscribe, watch their status and their predictions arrive live, unsubscribe. URLs are
// shown only as the server redacts them.

import { call, follow } from "./api.js";
import { h, percent, reconcile, showError, sparkline } from "./dom.js";

const EVERY_MS = 3000;
const HISTORY = 60; // clips in a sparkline
const HISTORY_S = 120;

let page;
let timer = null;
// Per camera: its status in the latest list, the SSE reader's abort controller, its luma history
// and its latest prediction.
const live = new Map();

function feed(id) {
  const entry = { camera: null, abort: new AbortController(), luma: [], latest: null };
  live.set(id, entry);
  const since = Date.now() / 1000 - HISTORY_S;
  const base = `/v1/streams/${encodeURIComponent(id)}/events`;
  follow(
    (last) => `${base}?since=${last ? last.start : since}`,
    (type, result) => {
      if (type !== "prediction") return;
      entry.luma = [...entry.luma, result.illumination.luma_mean].slice(-HISTORY);
      entry.latest = result;
      const card = page.querySelector(`.camera[data-key="${CSS.escape(id)}"]`);
      if (card) fill(card, entry.camera);
    },
    entry.abort.signal,
  );
  return entry;
}

function prediction(result) {
  if (!result) return [h("span", { class: "muted" }, "Waiting for the first clip…")];
  const when = new Date(result.end * 1000).toLocaleTimeString();
  const top = result.top[0];
  return [
    result.error ?? h("strong", {}, top.label),
    result.error ? "" : ` ${percent(top.score)}`,
    h("span", { class: "muted" }, ` at ${when}`),
    result.integrity.reconnect ? h("span", { class: "badge" }, "after reconnect") : "",
  ];
}

async function remove(id) {
  try {
    await call("DELETE", `/v1/streams/${encodeURIComponent(id)}`);
    refresh();
  } catch (error) {
    showError(page, error.message);
  }
}

function build(camera) {
  return h(
    "li",
    { class: "card camera" },
    h("div", { class: "card-head" }, h("h3", {}), h("span", { class: "badge" })),
    h("p", { class: "url" }),
    h("p", { class: "meta" }),
    h("div", { class: "luma" }),
    h("p", { class: "latest", "aria-live": "polite" }),
    h("button", { type: "button", class: "secondary", onclick: () => remove(camera.id) }, "Remove"),
  );
}

function fill(card, camera) {
  const entry = live.get(camera.id);
  entry.camera = camera;
  const fps = camera.fps == null ? "—" : camera.fps.toFixed(1);
  card.querySelector("h3").textContent = camera.name || camera.id;
  const badge = card.querySelector(".badge");
  badge.textContent = camera.status;
  badge.dataset.state = camera.status;
  card.querySelector(".url").textContent = camera.url;
  card.querySelector(".meta").textContent =
    `${fps} fps · ${camera.reconnects} reconnects` +
    (camera.last_error ? ` · last error: ${camera.last_error}` : "");
  card
    .querySelector(".luma")
    .replaceChildren(
      h("span", { class: "muted" }, "luma"),
      sparkline(entry.luma, `luma of the last ${entry.luma.length} clips`),
      h("span", {}, entry.luma.length ? entry.luma.at(-1).toFixed(1) : "—"),
    );
  card.querySelector(".latest").replaceChildren(...prediction(entry.latest));
}

async function refresh() {
  try {
    const list = await call("GET", "/v1/streams");
    const ids = new Set(list.map((camera) => camera.id));
    for (const [id, entry] of live) {
      if (!ids.has(id)) {
        entry.abort.abort();
        live.delete(id);
      }
    }
    for (const camera of list) if (!live.has(camera.id)) feed(camera.id);
    reconcile(page.querySelector(".camera-list"), list, (c) => c.id, build, fill);
    page.querySelector(".empty").hidden = list.length > 0;
  } catch (error) {
    showError(page, error.message);
  }
}

async function add(event) {
  event.preventDefault();
  const form = event.target;
  const { url, name } = form.elements;
  showError(page, "");
  try {
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
    page.querySelector(".camera-list").replaceChildren();
  },
};
