// Events: what the cameras' rules found, live (SSE), filtered, each with its clip and key frame
// beside their Retinex views; and per camera its rules and region of interest, drawn on a frame.

import { blobUrl, call, follow } from "./api.js";
import { h, percent, reconcile, seconds, showError } from "./dom.js";

const PAGE = 50;
let page;
let abort = null;
let shown = []; // the listed events, newest first
let total = 0; // matching events on the server
let urls = []; // blob URLs of the open event's evidence, revoked when another opens

const time = (t) => new Date(t * 1000).toLocaleString();

function filters() {
  const form = page.querySelector("#event-filters").elements;
  const params = new URLSearchParams({ limit: PAGE });
  if (form.camera.value) params.set("camera", form.camera.value);
  if (form.label.value.trim()) params.set("label", form.label.value.trim());
  if (form.since.value) params.set("since", new Date(form.since.value).getTime() / 1000);
  return params;
}

function wanted(event) {
  const params = filters();
  return (
    (!params.has("camera") || event.camera === params.get("camera")) &&
    (!params.has("label") || event.label === params.get("label")) &&
    event.start >= Number(params.get("since") ?? 0)
  );
}

function build(event) {
  return h(
    "li",
    { class: "card event" },
    h(
      "button",
      { type: "button", class: "event-open secondary", onclick: () => open(event.id) },
      h("strong", { class: "event-label" }),
      h("span", { class: "event-score" }),
      h("span", { class: "muted event-when" }),
      h("span", { class: "badge" }),
    ),
  );
}

function fill(card, event) {
  card.querySelector(".event-label").textContent = event.label;
  card.querySelector(".event-score").textContent = ` ${percent(event.score)} `;
  card.querySelector(".event-when").textContent =
    `${event.camera} · ${time(event.start)} · ${seconds(event.end - event.start)}`;
  const badge = card.querySelector(".badge");
  badge.textContent = event.status;
  badge.dataset.state = event.status === "open" ? "live" : "stopped";
}

function render() {
  reconcile(page.querySelector(".event-list"), shown, (e) => e.id, build, fill);
  page.querySelector(".event-total").textContent = `${total} events`;
  page.querySelector(".event-list + .empty").hidden = shown.length > 0;
}

function changed(event) {
  if (!wanted(event)) return;
  if (!shown.some((e) => e.id === event.id)) total += 1;
  shown = [event, ...shown.filter((e) => e.id !== event.id)]
    .sort((a, b) => b.start - a.start)
    .slice(0, PAGE);
  render();
}

async function load() {
  showError(page, "");
  abort?.abort();
  abort = new AbortController();
  try {
    const answer = await call("GET", `/v1/events?${filters()}`);
    shown = answer.events;
    total = answer.total;
    render();
  } catch (error) {
    showError(page, error.message);
  }
  const since = Date.now() / 1000;
  follow(
    (last) => `/v1/events/live?since=${last ? last.updated : since}`,
    (type, event) => type === "event" && changed(event),
    abort.signal,
  );
}

async function open(id) {
  const detail = page.querySelector(".event-detail");
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
  const event = shown.find((e) => e.id === id);
  const base = `/v1/events/${id}`;
  const media = async (path) => {
    const url = await blobUrl(path).catch(() => null);
    if (url) urls.push(url);
    return url;
  };
  const evidence = event.evidence;
  const enhanced = evidence?.enhanced;
  const [clip, clipEnhanced, still, stillEnhanced] = evidence
    ? await Promise.all([
        media(`${base}/clip`),
        enhanced ? media(`${base}/clip?enhanced=true`) : null,
        media(`${base}/snapshot`),
        enhanced ? media(`${base}/snapshot?enhanced=true`) : null,
      ])
    : [null, null, null, null];
  const video = clip && h("video", { class: "event-video", src: clip, controls: true, loop: true });
  const figure = (src, caption) =>
    src && h("figure", {}, h("img", { class: "frame-img", src, alt: caption }), h("figcaption", {}, caption));
  detail.replaceChildren(
    h("h3", {}, `${event.label} ${percent(event.score)} on ${event.camera}`),
    h(
      "p",
      { class: "muted" },
      `${time(event.start)} – ${time(event.end)} · ${event.clips} clips · model ${event.model_version}`,
    ),
    evidence ? "" : h("p", { class: "muted" }, "No evidence was kept for this event."),
    video
      ? h(
          "div",
          { class: "inline" },
          video,
          clipEnhanced &&
            h("label", { class: "check" }, h("input", {
              type: "checkbox",
              onchange: (e) => {
                const at = video.currentTime;
                video.src = e.target.checked ? clipEnhanced : clip;
                video.currentTime = at;
                video.play();
              },
            }), " Enhanced view"),
        )
      : "",
    h("div", { class: "frames" }, figure(still, "Key frame"), figure(stillEnhanced, "Enhanced")),
    h(
      "p",
      { class: "inline" },
      clip && h("a", { href: clip, download: `event-${id}.mp4` }, "Download clip"),
      clipEnhanced && h("a", { href: clipEnhanced, download: `event-${id}-enhanced.mp4` }, "Download enhanced clip"),
    ),
    h("button", { type: "button", class: "secondary", onclick: () => remove(id) }, "Delete event"),
  );
  detail.hidden = false;
}

async function remove(id) {
  try {
    await call("DELETE", `/v1/events/${id}`);
    shown = shown.filter((e) => e.id !== id);
    page.querySelector(".event-detail").hidden = true;
    render();
  } catch (error) {
    showError(page, error.message);
  }
}

// ------------------------------------------------------------------ a camera's rules and region

let cameras = [];
let box = null; // the drawn region: [x0, y0, x1, y1], relative

function camera() {
  const id = page.querySelector("#rules-form").elements.camera.value;
  return cameras.find((c) => c.id === id);
}

/** The cameras into both selects; `refill` also puts the selected camera's rules in the form
 * (not after a save, which would overwrite what is being typed). */
async function loadCameras(refill = true) {
  try {
    cameras = await call("GET", "/v1/streams");
  } catch (error) {
    showError(page, error.message);
    return;
  }
  for (const select of page.querySelectorAll("select[name=camera]")) {
    const keep = select.value;
    const any = select.closest("#event-filters") ? [h("option", { value: "" }, "all cameras")] : [];
    select.replaceChildren(...any, ...cameras.map((c) => h("option", { value: c.id }, c.name || c.id)));
    select.value = keep;
  }
  if (refill) showRules();
}

function showRules() {
  const form = page.querySelector("#rules-form").elements;
  const rules = camera()?.rules;
  form.labels.value = rules ? rules.labels.join(", ") : "";
  form.min_score.value = rules ? rules.min_score : 0.6;
  form.min_clips.value = rules ? rules.min_clips : 2;
  form.cooldown_s.value = rules ? rules.cooldown_s : 30;
  const roi = camera()?.roi;
  if (roi) {
    const xs = roi.points.map((p) => p[0]);
    const ys = roi.points.map((p) => p[1]);
    box = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  } else box = null;
  draw();
}

async function saveRules(event) {
  event.preventDefault();
  const form = event.target.elements;
  const id = encodeURIComponent(form.camera.value);
  const rules = {
    labels: form.labels.value.split(",").map((l) => l.trim()).filter(Boolean),
    min_score: Number(form.min_score.value),
    min_clips: Number(form.min_clips.value),
    cooldown_s: Number(form.cooldown_s.value),
  };
  showError(page, "");
  try {
    if (event.submitter?.value === "clear") await call("DELETE", `/v1/streams/${id}/rules`);
    else await call("PUT", `/v1/streams/${id}/rules`, rules);
    page.querySelector(".rules-state").textContent = "Saved; the camera restarts with it.";
    loadCameras(false);
  } catch (error) {
    showError(page, error.message);
  }
}

function draw() {
  const canvas = page.querySelector(".roi-canvas");
  const context = canvas.getContext("2d");
  const image = page.querySelector(".roi-frame");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (image.complete && image.naturalWidth) context.drawImage(image, 0, 0, canvas.width, canvas.height);
  if (!box) return;
  const [x0, y0, x1, y1] = box;
  context.strokeStyle = "#ffb000";
  context.lineWidth = 2;
  context.strokeRect(x0 * canvas.width, y0 * canvas.height, (x1 - x0) * canvas.width, (y1 - y0) * canvas.height);
}

async function loadFrame() {
  const c = camera();
  if (!c) return;
  const image = page.querySelector(".roi-frame");
  try {
    const url = await blobUrl(`/v1/streams/${encodeURIComponent(c.id)}/view`);
    image.onload = () => {
      const canvas = page.querySelector(".roi-canvas");
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      draw();
      URL.revokeObjectURL(url);
    };
    image.src = url;
  } catch (error) {
    showError(page, error.message);
  }
}

function dragging(canvas) {
  let start = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  };
  canvas.addEventListener("pointerdown", (e) => {
    start = at(e);
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!start) return;
    const [x, y] = at(e);
    box = [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)];
    draw();
  });
  canvas.addEventListener("pointerup", () => (start = null));
}

async function saveRoi(clear) {
  const id = encodeURIComponent(camera()?.id ?? "");
  showError(page, "");
  try {
    if (clear || !box) await call("DELETE", `/v1/streams/${id}/roi`);
    else await call("PUT", `/v1/streams/${id}/roi`, { points: [box.slice(0, 2), box.slice(2)] });
    page.querySelector(".rules-state").textContent = "Region saved; the camera restarts with it.";
    loadCameras(false);
  } catch (error) {
    showError(page, error.message);
  }
}

export const events = {
  init(section) {
    page = section;
    section.querySelector("#event-filters").addEventListener("submit", (e) => {
      e.preventDefault();
      load();
    });
    const rules = section.querySelector("#rules-form");
    rules.addEventListener("submit", saveRules);
    rules.elements.camera.addEventListener("change", () => {
      showRules();
      loadFrame();
    });
    section.querySelector(".roi-load").addEventListener("click", loadFrame);
    section.querySelector(".roi-save").addEventListener("click", () => saveRoi(false));
    section.querySelector(".roi-clear").addEventListener("click", () => saveRoi(true));
    dragging(section.querySelector(".roi-canvas"));
  },
  show() {
    loadCameras();
    load();
  },
  hide() {
    abort?.abort();
    abort = null;
  },
};
