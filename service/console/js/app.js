// The console's pages, one visible at a time by the URL's hash; a page polls only while shown.

import { cameras } from "./cameras.js";
import { classify } from "./classify.js";
import { events } from "./events.js";
import { jobs } from "./jobs.js";
import { models } from "./models.js";
import { startStatus } from "./status.js";

const pages = { classify, cameras, events, models, jobs };
let current = null;

function route(event) {
  const name = location.hash.slice(1) in pages ? location.hash.slice(1) : "classify";
  if (current === name) return;
  if (current) {
    pages[current].hide();
    document.getElementById(current).hidden = true;
  }
  current = name;
  const page = document.getElementById(name);
  page.hidden = false;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  pages[name].show(page);
  // After a move between pages, keyboard and screen-reader users continue in the new page.
  if (event) document.getElementById("main").focus();
}

for (const [name, page] of Object.entries(pages)) page.init(document.getElementById(name));
window.addEventListener("hashchange", route);
route();
startStatus();
