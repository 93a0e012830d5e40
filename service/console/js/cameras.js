// Cameras: subscribe, watch their state, latest key frame and predictions arrive live, unsubscribe.
// A failing camera says why and when it tries again. URLs are shown only as the server redacts
// them.

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
  const entry = {
    camera: null,
    abort: new AbortController(),
    luma: [],
    latest: null,
    frameOf: null,
  };
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
    h("p", { class: "problem", role: "status" }),
    h(
      "div",
      { class: "frames", hidden: true },
      ["dark", "enhanced"].map((view) =>
        h(
          "figure",
          {},
          h(
            "div",
            { class: `frame ${view}` },
            h("img", { class: "pixelated", alt: `latest key frame, ${view}` }),
          ),
          h("figcaption", {}, view === "dark" ? "As captured" : "Enhanced"),
        ),
      ),
    ),
    h("div", { class: "luma" }),
    h("p", { class: "latest", "aria-live": "polite" }),
    h("button", { type: "button", class: "secondary", onclick: () => remove(camera.id) }, "Remove"),
  );
}

const clock = (unix) => new Date(unix * 1000).toLocaleTimeString();

/** Why the camera is not live, in words, with the time of its next attempt. */
function problem(camera) {
  if (camera.state === "failing") {
    const retry = camera.next_retry_at ? `; next retry at ${clock(camera.next_retry_at)}` : "";
    return `Failing: ${camera.last_error ?? "the source failed"}${retry}`;
  }
  if (camera.state === "stalled") return "Stalled: connected, but no frame is arriving";
  return "";
}

/** Fetch the camera's latest key frame when it has a newer clip than the one shown. */
async function refreshFrame(card, camera, entry) {
  if (camera.last_clip == null || camera.last_clip === entry.frameOf) return;
  entry.frameOf = camera.last_clip;
  try {
    const frame = await call("GET", `/v1/streams/${encodeURIComponent(camera.id)}/frame`);
    for (const view of ["dark", "enhanced"]) {
      card.querySelector(`.frame.${view} img`).src = frame[view];
    }
    card.querySelector(".frames").hidden = false;
  } catch (error) {
    entry.frameOf = null; // try again on the next refresh
  }
}

function fill(card, camera) {
  const entry = live.get(camera.id);
  entry.camera = camera;
  const fps = camera.fps == null ? "—" : camera.fps.toFixed(1);
  card.querySelector("h3").textContent = camera.name || camera.id;
  const badge = card.querySelector(".badge");
  badge.textContent = camera.state;
  badge.dataset.state = camera.state;
  card.querySelector(".url").textContent = camera.url;
  card.querySelector(".meta").textContent =
    `${fps} fps · ${camera.reconnects} reconnects` +
    (camera.last_error && camera.state !== "failing" ? ` · last error: ${camera.last_error}` : "") +
    camera.warnings.map((warning) => ` · ${warning}`).join("");
  const trouble = problem(camera);
  card.querySelector(".problem").textContent = trouble;
  card.querySelector(".problem").hidden = !trouble;
  refreshFrame(card, camera, entry);
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
