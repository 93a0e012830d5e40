// Metrics by meaning: whatever shape a model's manifest or a job reports (nested objects, dotted
// keys), shown as readable names and values a person reads at a glance: accuracies as
// percentages, times as durations, counts as whole numbers. Nothing prints as an object or NaN.

import { h } from "./dom.js";

const WORDS = { top1: "top-1", top5: "top-5", per_class: "per class", val: "validation" };
const PERCENT = /^(top\d+|acc|accuracy|recall|precision|f1)$|confusion/;
const DURATION = /(^|_)(seconds|time|s)$/;

/** {"test": {"top1": 0.7}, "seconds.total": 9} -> [[["test", "top1"], 0.7], [["seconds", "total"], 9]] */
export function flatten(values, path = []) {
  return Object.entries(values ?? {}).flatMap(([key, value]) => {
    const keys = [...path, ...key.split(".")];
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      return flatten(value, keys);
    }
    return [[keys, value]];
  });
}

/** ["seconds", "teacher"] -> "teacher time"; ["test", "top1"] -> "test top-1". */
export function metricName(keys) {
  const words = keys.map((key) => WORDS[key] ?? key.replaceAll("_", " "));
  if (keys[0] === "seconds" && keys.length > 1) return `${words.slice(1).join(" ")} time`;
  return words.join(" ");
}

export function duration(seconds) {
  if (seconds < 60) return `${+seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

/** A value by what its name says it measures. */
export function metricValue(keys, value) {
  if (typeof value !== "number") return value == null ? "—" : String(value);
  if (!Number.isFinite(value)) return "—";
  const leaf = keys.at(-1);
  if (PERCENT.test(leaf) || keys.includes("per_class")) return `${(100 * value).toFixed(1)}%`;
  if (keys[0] === "seconds" || DURATION.test(leaf)) return duration(value);
  if (Number.isInteger(value)) return String(value);
  return String(+value.toPrecision(4));
}

/**
 * The number that matters: test top-1, else validation top-1, else any top-1; of each the least
 * nested, so a run's own test top-1 comes before its teacher's (`teacher.test.top1`); or null.
 */
export function headline(values) {
  const scores = flatten(values).filter(
    ([keys, value]) => keys.at(-1) === "top1" && typeof value === "number",
  );
  for (const split of ["test", "eval", "validation", "val", null]) {
    const [found] = scores
      .filter(([keys]) => split === null || keys.includes(split))
      .sort(([a], [b]) => a.length - b.length);
    if (found) return { name: metricName(found[0]), value: metricValue(found[0], found[1]) };
  }
  return null;
}

/** A definition list of every metric; per-class figures folded away under their own summary. */
export function metricList(values) {
  const entries = flatten(values);
  if (!entries.length) return h("span", { class: "muted" }, "—");
  const item = ([keys, value]) => [
    h("dt", {}, metricName(keys.filter((key) => key !== "per_class"))),
    h("dd", {}, metricValue(keys, value)),
  ];
  const perClass = entries.filter(([keys]) => keys.includes("per_class"));
  const rest = entries.filter(([keys]) => !keys.includes("per_class"));
  return h(
    "div",
    {},
    h("dl", { class: "metrics" }, rest.flatMap(item)),
    perClass.length
      ? h(
          "details",
          {},
          h("summary", {}, `per class (${perClass.length})`),
          h("dl", { class: "metrics" }, perClass.flatMap(item)),
        )
      : null,
  );
}
