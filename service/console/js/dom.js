// Building DOM from data without innerHTML: labels, names and URLs come from the server and
// cameras, so they are only ever text.

const SVG = "http://www.w3.org/2000/svg";

/** h("p", {class: "x", onclick: f}, "text", child) -> an element. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child != null && child !== false));
  return element;
}

/** Show `message` in a page's alert line, or hide it when empty. */
export function showError(page, message) {
  const line = page.querySelector(".error");
  line.textContent = message || "";
  line.hidden = !message;
}

export const percent = (score) => `${(100 * score).toFixed(1)}%`;
export const seconds = (value) => `${value.toFixed(1)} s`;

/** Top labels as rows of label, bar and score. */
export function scoreList(predictions) {
  return h(
    "ul",
    { class: "scores" },
    predictions.map(({ label, score }) =>
      h(
        "li",
        {},
        h("span", { class: "label" }, label),
        h("meter", { min: 0, max: 1, value: score, "aria-label": `${label} score` }),
        h("span", { class: "score" }, percent(score)),
      ),
    ),
  );
}

/** A small line chart of `values` (e.g. luma per clip), scaled to their own range. */
export function sparkline(values, label) {
  const svg = document.createElementNS(SVG, "svg");
  const [width, height] = [120, 28];
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  if (values.length > 1) {
    const low = Math.min(...values);
    const span = Math.max(...values) - low || 1;
    const points = values.map((v, i) => {
      const x = (i / (values.length - 1)) * width;
      const y = height - 2 - ((v - low) / span) * (height - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}

/**
 * Make `list` show one child per item, in order, reusing the child of the same key: polling
 * updates the cards in place, so focus, open <details> and scroll survive a refresh.
 */
export function reconcile(list, items, key, build, fill) {
  const existing = new Map([...list.children].map((child) => [child.dataset.key, child]));
  const wanted = items.map((item) => {
    const child = existing.get(key(item)) ?? build(item);
    child.dataset.key = key(item);
    fill(child, item);
    return child;
  });
  const keep = new Set(wanted);
  for (const child of existing.values()) if (!keep.has(child)) child.remove();
  wanted.forEach((child, i) => {
    if (list.children[i] !== child) list.insertBefore(child, list.children[i] ?? null);
  });
}
