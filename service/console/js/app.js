// The console's pages, one visible at a time by the URL's hash; a page polls only while shown.

import { cameras } from "./cameras.js";
import { classify } from "./classify.js";
import { jobs } from "./jobs.js";
import { models } from "./models.js";
import { startStatus } from "./status.js";

const pages = { classify, cameras, models, jobs };
let current = null;

function route() {
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
    link.toggleAttribute("aria-current", link.hash === `#${name}`);
    if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
  }
  pages[name].show(page);
}

for (const [name, page] of Object.entries(pages)) page.init(document.getElementById(name));
window.addEventListener("hashchange", route);
route();
startStatus();
