// Training jobs: start one (stage, data set, a few overrides), follow its progress and log, cancel.

import { call } from "./api.js";
import { h, percent, showError } from "./dom.js";

const EVERY_MS = 1500;
const OVERRIDE = /^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*[=:]\s*(.+)$/;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

let page;
let timer = null;

/** "optim.epochs = 1" lines -> {"optim.epochs": 1}; values are JSON where they parse as JSON. */
function parseOverrides(text) {
  const overrides = {};
  for (const [n, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = OVERRIDE.exec(line);
    if (!match) throw new Error(`override line ${n + 1}: expected key = value, got "${line}"`);
    try {
      overrides[match[1]] = JSON.parse(match[2]);
    } catch {
      overrides[match[1]] = match[2];
    }
  }
  return overrides;
}

function card(job) {
  const cancel = async () => {
    try {
      await call("DELETE", `/v1/jobs/${job.id}`);
      refresh();
    } catch (error) {
      showError(page, error.message);
    }
  };
  const metrics = Object.entries(job.metrics).slice(-6);
  return h(
    "li",
    { class: "card job", "data-id": job.id },
    h(
      "div",
      { class: "card-head" },
      h("h3", {}, `${job.stage} on ${job.dataset}`),
      h("span", { class: "badge", "data-state": job.state }, job.state),
    ),
    h(
      "div",
      { class: "progress" },
      h("progress", { max: 1, value: job.progress, "aria-label": `job ${job.id} progress` }),
      h("span", { class: "fraction" }, percent(job.progress)),
      h("span", { class: "step muted" }, job.step ?? ""),
    ),
    job.error ? h("p", { class: "error" }, job.error) : null,
    job.model_version ? h("p", {}, `Registered model ${job.model_version}`) : null,
    metrics.length
      ? h("p", { class: "meta" }, metrics.map(([k, v]) => `${k} ${+Number(v).toFixed(4)}`).join(" · "))
      : null,
    job.log_tail.length
      ? h(
          "details",
          { open: !FINAL.has(job.state) },
          h("summary", {}, "Log"),
          h("pre", { class: "log" }, job.log_tail.slice(-12).join("\n")),
        )
      : null,
    FINAL.has(job.state)
      ? null
      : h("button", { type: "button", class: "secondary", onclick: cancel }, "Cancel"),
    h("p", { class: "meta muted" }, `job ${job.id} · ${new Date(job.created).toLocaleString()}`),
  );
}

async function refresh() {
  try {
    const jobs = await call("GET", "/v1/jobs");
    const list = page.querySelector(".job-list");
    list.replaceChildren(...jobs.map(card));
    if (!jobs.length) list.append(h("li", { class: "muted" }, "No jobs yet."));
  } catch (error) {
    showError(page, error.message);
  }
}

async function submit(event) {
  event.preventDefault();
  const { stage, dataset, activate, overrides } = event.target.elements;
  showError(page, "");
  try {
    await call("POST", "/v1/jobs", {
      stage: stage.value,
      dataset: dataset.value.trim(),
      overrides: parseOverrides(overrides.value),
      activate: activate.checked,
    });
    refresh();
  } catch (error) {
    showError(page, error.message);
  }
}

export const jobs = {
  init(section) {
    page = section;
    section.querySelector("#job-form").addEventListener("submit", submit);
  },
  show() {
    refresh();
    timer = setInterval(refresh, EVERY_MS);
  },
  hide() {
    clearInterval(timer);
  },
};
