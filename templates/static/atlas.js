// Intra-class atlas: index search/sort and an image lightbox. Plain JS, no network, no framework.
"use strict";

function setupIndex() {
  // The page holds the first page of cards; class-index.js (window.ATLAS_INDEX) holds every
  // class, so search, sort and paging work on all of them without a 1000-card page. The list
  // is loaded on the first use of the toolbar or pager, so opening the index does not fetch it.
  const list = document.getElementById("class-list");
  const search = document.getElementById("class-search");
  const sort = document.getElementById("class-sort");
  if (!list || !search || !sort || !list.dataset.index) return;
  const count = document.getElementById("class-count");
  const none = document.getElementById("no-match");
  const pager = document.getElementById("class-pager");
  const previous = document.getElementById("page-prev");
  const next = document.getElementById("page-next");
  const where = document.getElementById("page-where");
  let index = null;
  let classes = [];
  let matches = [];
  let page = 0;
  const waiting = [];

  function withClasses(then) {
    // Run `then` once class-index.js has run (a <script>, not fetch(): pages opened from file:// may not fetch).
    if (index) { then(); return; }
    waiting.push(then);
    if (waiting.length > 1) return;
    const script = document.createElement("script");
    script.src = list.dataset.index;
    script.addEventListener("load", () => {
      index = window.ATLAS_INDEX;
      classes = index.rows.map((row) => Object.fromEntries(index.fields.map((name, i) => [name, row[i]])));
      classes.forEach((c, position) => { c.position = position; c.text = (c.name + " " + c.id).toLowerCase(); });
      matches = classes;
      for (const run of waiting.splice(0)) run();
    });
    document.head.append(script);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(c) {
    const item = el("li", "card");
    const link = el("a", "card-link");
    link.href = "classes/" + c.slug + "/index.html";
    if (c.src) {
      const image = el("img");
      image.src = "classes/" + c.slug + "/" + c.src;
      image.alt = c.alt;
      image.loading = "lazy";
      if (c.width) { image.width = c.width; image.height = c.height; }
      link.append(image);
    } else {
      const empty = el("span", "card-empty", "no pictures yet");
      empty.setAttribute("aria-hidden", "true");
      link.append(empty);
    }
    const body = el("span", "card-body");
    const meta = el("span", "card-meta");
    meta.append(el("code", "", c.id));
    if (c.index !== null) meta.append(" · #" + c.index);
    const stats = el("span", "card-stats");
    for (const [text, title] of Object.values(c.stats)) {
      const pill = el("span", "pill", text);
      if (title) pill.title = title;
      stats.append(pill);
    }
    body.append(el("span", "card-title", c.name), meta, stats);
    link.append(body);
    item.append(link);
    return item;
  }

  function show() {
    const pages = Math.max(1, Math.ceil(matches.length / index.page));
    page = Math.min(page, pages - 1);
    const first = page * index.page;
    const shown = matches.slice(first, first + index.page);
    list.replaceChildren(...shown.map(card));
    count.textContent = matches.length > index.page
      ? (first + 1) + "–" + (first + shown.length) + " of " + matches.length + " shown"
      : matches.length + " shown";
    none.hidden = matches.length > 0;
    pager.hidden = pages < 2;
    where.textContent = "Page " + (page + 1) + " of " + pages;
    previous.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  function compare(key) {
    // index and name ascending; a method's stat (site.StatValue) high first
    const stat = key !== "index" && key !== "name";
    const value = (c) => (key === "name" ? c.name.toLowerCase() : stat ? (c.stats[key] || [])[2] ?? null : c[key]);
    return (a, b) => {
      const x = value(a), y = value(b);
      if (x === y) return a.position - b.position;
      if (x === null) return 1;   // classes without the number go last
      if (y === null) return -1;
      if (key === "name") return x.localeCompare(y);
      return stat ? y - x : x - y;
    };
  }

  function update() {
    const words = search.value.toLowerCase().trim().split(/\s+/).filter(Boolean);
    const found = classes.filter((c) => words.every((w) => c.text.includes(w)));
    matches = found.sort(compare(sort.value));
    page = 0;
    show();
  }

  function turn(step) {
    page += step;
    show();
    list.scrollIntoView({block: "nearest"});
  }

  search.addEventListener("focus", () => withClasses(() => {}));  // start loading while the user types
  search.addEventListener("input", () => withClasses(update));
  sort.addEventListener("change", () => withClasses(update));
  previous.addEventListener("click", () => withClasses(() => turn(-1)));
  next.addEventListener("click", () => withClasses(() => turn(1)));
  const params = new URLSearchParams(window.location.search);
  if (params.has("q")) search.value = params.get("q");
  // The page already shows the first page in index order: redraw only for a query or a sort
  // (from ?q= or the form state the browser restores).
  if (search.value.trim() || sort.value !== "index") withClasses(update);
}

function setupLightbox() {
  // The dialog is made on the first click, so a page that is only read builds nothing.
  const links = document.querySelectorAll("a.zoom");
  if (!links.length || typeof HTMLDialogElement !== "function") return;
  let box = null;
  let opener = null;

  function makeDialog() {
    const dialog = document.createElement("dialog");
    dialog.className = "lightbox";
    dialog.setAttribute("aria-label", "Enlarged picture");
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    const caption = document.createElement("figcaption");
    const bar = document.createElement("div");
    bar.className = "lightbox-bar";
    const full = document.createElement("a");
    full.textContent = "Open full-size image";
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "Close (Esc)";
    bar.append(full, close);
    figure.append(image, caption, bar);
    dialog.append(figure);
    document.body.append(dialog);
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
    dialog.addEventListener("close", () => {
      image.removeAttribute("src");
      if (opener) opener.focus();
    });
    return {dialog, image, caption, full, close};
  }

  for (const link of links) {
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      box = box || makeDialog();
      opener = link;
      const thumb = link.querySelector("img");
      box.full.href = link.getAttribute("href");
      box.image.src = link.getAttribute("href");
      box.image.alt = thumb ? thumb.alt : "";
      box.caption.textContent = link.dataset.caption || box.image.alt;
      box.dialog.showModal();
      box.close.focus();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupIndex();
  setupLightbox();
});
