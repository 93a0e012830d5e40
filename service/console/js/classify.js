// Classify: upload a video, then its verdict and a timeline of clips, each with its labels, its
// illumination and its key frame as captured beside the Retinex view (from /v1/frames).

import { call, upload } from "./api.js";
import { h, percent, scoreList, seconds, showError } from "./dom.js";

const POLL_MS = 1000;
let page;

function state(text, fraction) {
  const box = page.querySelector(".upload");
  box.hidden = false;
  const bar = box.querySelector("progress");
  if (fraction === undefined) bar.removeAttribute("value");
  else bar.value = fraction;
  box.querySelector(".upload-state").textContent = text;
}

/** POST the video; a long one is answered 202 and polled until done. */
async function classifyFile(file) {
  let { status, body } = await upload("/v1/classify", file, (sent) =>
    state(`Uploading ${file.name}: ${percent(sent)}`, sent),
  );
  state(`Classifying ${file.name}…`);
  while (status === 202) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    body = await call("GET", `/v1/classify/${body.id}`);
    status = body.status === "pending" ? 202 : 200;
  }
  if (body.status === "failed") throw new Error(body.problem?.detail ?? "classification failed");
  return body;
}

function verdict(result) {
  const best = result.video.top[0];
  const light = result.illumination;
  return [
    h("h3", {}, "Verdict"),
    best
      ? h("p", { class: "headline" }, h("strong", {}, best.label), ` ${percent(best.score)}`)
      : h("p", {}, "No clip was classified."),
    scoreList(result.video.top),
    h(
      "p",
      { class: "meta" },
      `${result.clip_count} clips · model ${result.model_version ?? "—"}`,
      result.gated ? ` · ${result.gated} skipped as too dark` : "",
      light ? ` · mean luma ${light.luma_mean.toFixed(1)} of 255` : "",
      ` · ${seconds(result.timings.total)}`,
    ),
  ];
}

function clipItem(clip) {
  const light = clip.illumination;
  return h(
    "li",
    { class: "clip", "data-seq": clip.seq },
    h("h4", { class: "span" }, `Clip ${clip.seq + 1}`),
    clip.error ? h("p", { class: "error" }, clip.error) : scoreList(clip.top.slice(0, 3)),
    h(
      "p",
      { class: "meta" },
      `luma ${light.luma_mean.toFixed(1)} (p5 ${light.luma_p5.toFixed(0)}, p95 `,
      `${light.luma_p95.toFixed(0)}) · noise σ ${light.noise_sigma.toFixed(1)}`,
    ),
    h(
      "div",
      { class: "frames" },
      h("figure", {}, h("div", { class: "frame dark" }), h("figcaption", {}, "As captured")),
      h("figure", {}, h("div", { class: "frame enhanced" }), h("figcaption", {}, "Retinex")),
    ),
  );
}

/**
 * An outline of the square the model zoomed the clip onto (`focus`: fractions of the frame), over
 * a key frame. Placed through the CSSOM: the console's CSP refuses style attributes.
 */
function focusBox({ x, y, side }) {
  const box = h("div", { class: "focus" });
  const at = (fraction) => `${(100 * fraction).toFixed(2)}%`;
  Object.assign(box.style, { left: at(x), top: at(y), width: at(side), height: at(side) });
  return box;
}

/** Fill each clip's time span and its two frame views; key frames are a second, slower step. */
async function showFrames(file, timeline) {
  const { body } = await upload("/v1/frames", file, () => {});
  for (const frame of body.clips) {
    const item = timeline.querySelector(`[data-seq="${frame.seq}"]`);
    if (!item) continue; // the darkness gate skipped it
    item.querySelector(".span").textContent =
      `Clip ${frame.seq + 1} · ${frame.start.toFixed(1)}–${frame.end.toFixed(1)} s`;
    const looked = frame.focus
      ? `; the model looked at the marked square, ${(1 / frame.focus.side).toFixed(1)}x`
      : "";
    for (const view of ["dark", "enhanced"]) {
      const alt = `Clip ${frame.seq + 1} ${view === "dark" ? "as captured" : "after Retinex"}`;
      const shown = [h("img", { src: frame[view], alt: alt + looked })];
      if (frame.focus) shown.push(focusBox(frame.focus));
      item.querySelector(`.frame.${view}`).replaceChildren(...shown);
    }
  }
}

async function run(file) {
  const result = page.querySelector(".result");
  result.hidden = true;
  showError(page, "");
  try {
    const answer = await classifyFile(file);
    page.querySelector(".verdict").replaceChildren(...verdict(answer));
    const timeline = page.querySelector(".timeline");
    timeline.replaceChildren(...answer.clips.map(clipItem));
    result.hidden = false;
    state("Rendering key frames…");
    await showFrames(file, timeline);
    state(`${file.name}: done`, 1);
  } catch (error) {
    page.querySelector(".upload").hidden = true;
    showError(page, `${file.name}: ${error.message}`);
  }
}

export const classify = {
  init(section) {
    page = section;
    const input = section.querySelector("input[type=file]");
    const drop = section.querySelector(".drop");
    input.addEventListener("change", () => input.files[0] && run(input.files[0]));
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
    });
  },
  show() {},
  hide() {},
};
