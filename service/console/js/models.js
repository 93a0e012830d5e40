// Models: the registered versions with their metrics; activate one.

import { call } from "./api.js";
import { h, showError } from "./dom.js";

let page;

function metrics(values) {
  const entries = Object.entries(values);
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return h(
    "dl",
    { class: "metrics" },
    entries.flatMap(([name, value]) => [
      h("dt", {}, name),
      h("dd", {}, typeof value === "number" ? String(+value.toFixed(4)) : String(value)),
    ]),
  );
}

function row(model) {
  const activate = async () => {
    try {
      await call("POST", `/v1/models/${encodeURIComponent(model.version)}/activate`);
      refresh();
    } catch (error) {
      showError(page, error.message);
    }
  };
  return h(
    "tr",
    { "data-version": model.version },
    h("th", { scope: "row" }, model.version),
    h("td", {}, new Date(model.created).toLocaleString()),
    h("td", {}, metrics(model.metrics)),
    h("td", {}, String(model.labels.length)),
    h(
      "td",
      {},
      model.active
        ? h("span", { class: "badge", "data-state": "ready" }, "active")
        : h("button", { type: "button", onclick: activate }, "Activate"),
    ),
  );
}

async function refresh() {
  showError(page, "");
  try {
    const { versions } = await call("GET", "/v1/models");
    page.querySelector("tbody").replaceChildren(...versions.map(row));
  } catch (error) {
    showError(page, error.message);
  }
}

export const models = {
  init(section) {
    page = section;
  },
  show: refresh,
  hide() {},
};
