// Models: the registered versions with their metrics; activate one.

import { call } from "./api.js";
import { h, showError } from "./dom.js";
import { headline, metricList } from "./metrics.js";

let page;

function metrics(values) {
  const top = headline(values);
  return h(
    "div",
    {},
    top ? h("p", { class: "headline-metric" }, h("strong", {}, top.value), ` ${top.name}`) : null,
    metricList(values),
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
    h("td", { "data-label": "Created" }, new Date(model.created).toLocaleString()),
    h("td", { "data-label": "Metrics" }, metrics(model.metrics)),
    h("td", { "data-label": "Labels" }, String(model.labels.length)),
    h(
      "td",
      { class: "action" },
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
