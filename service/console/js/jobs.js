// Training jobs: start one (stage, data set, a few overrides), follow its progress and log, cancel.

import { call } from "./api.js";
import { h, percent, reconcile, showError } from "./dom.js";
import { flatten, headline, metricName, metricValue } from "./metrics.js";

const EVERY_MS = 1500;
const OVERRIDE = /^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*[=:]\s*(.+)$/;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const LOG_LINES = 12;
const SHOWN_METRICS = 6;

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

async function cancel(id) {
  try {
    await call("DELETE", `/v1/jobs/${encodeURIComponent(id)}`);
    refresh();
  } catch (error) {
    showError(page, error.message);
  }
}

function build(job) {
  return h(
    "li",
    { class: "card job" },
    h(
      "div",
      { class: "card-head" },
      h("h3", {}, `${job.stage} on ${job.dataset}`),
      h("span", { class: "badge" }),
    ),
    h(
      "div",
      { class: "progress" },
      h("progress", { max: 1, "aria-label": `job ${job.id} progress` }),
      h("span", { class: "fraction" }),
      h("span", { class: "step muted" }),
    ),
    h("p", { class: "error" }),
    h("p", { class: "outcome" }),
    h("p", { class: "headline-metric" }),
    h("p", { class: "meta job-metrics" }),
    h(
      "details",
      { open: !FINAL.has(job.state) },
      h("summary", {}, "Log"),
      h("pre", { class: "log" }),
    ),
    h("button", { type: "button", class: "secondary", onclick: () => cancel(job.id) }, "Cancel"),
    h("p", { class: "meta muted" }, `job ${job.id} · ${new Date(job.created).toLocaleString()}`),
  );
}

function fill(card, job) {
  const text = (selector, value) => {
    const element = card.querySelector(selector);
    element.textContent = value ?? "";
    element.hidden = !value;
  };
  const badge = card.querySelector(".badge");
  badge.textContent = job.state;
  badge.dataset.state = job.state;
  card.querySelector("progress").value = job.progress;
  text(".fraction", percent(job.progress));
  text(".step", job.step);
  text(".error", job.error);
  text(".outcome", job.model_version && `Registered model ${job.model_version}`);
  const top = headline(job.metrics);
  text(".headline-metric", top && `${top.value} ${top.name}`);
  const shown = flatten(job.metrics)
    .filter(([keys]) => !keys.includes("per_class"))
    .slice(-SHOWN_METRICS);
  text(
    ".job-metrics",
    shown.map(([keys, value]) => `${metricName(keys)} ${metricValue(keys, value)}`).join(" · "),
  );
  card.querySelector(".log").textContent = job.log_tail.slice(-LOG_LINES).join("\n");
  card.querySelector("details").hidden = !job.log_tail.length;
  card.querySelector("button").hidden = FINAL.has(job.state);
}

async function refresh() {
  try {
    const jobs = await call("GET", "/v1/jobs");
    reconcile(page.querySelector(".job-list"), jobs, (job) => job.id, build, fill);
    page.querySelector(".empty").hidden = jobs.length > 0;
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
