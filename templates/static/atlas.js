// Intra-class atlas: index search/sort and an image lightbox. Plain JS, no network, no framework.
"use strict";

function setupIndex() {
  const list = document.getElementById("class-list");
  const search = document.getElementById("class-search");
  const sort = document.getElementById("class-sort");
  if (!list || !search || !sort) return;
  const cards = Array.from(list.children);
  const count = document.getElementById("class-count");
  const none = document.getElementById("no-match");

  function filter() {
    const words = search.value.toLowerCase().trim().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const card of cards) {
      const text = card.dataset.name + " " + card.dataset.id;
      const match = words.every((w) => text.includes(w));
      card.hidden = !match;
      if (match) shown += 1;
    }
    count.textContent = shown + " shown";
    none.hidden = shown > 0;
  }

  function order() {
    const key = sort.value;
    const value = (card) => {
      if (key === "name") return card.dataset.name;
      const number = parseFloat(card.dataset[key]);
      return Number.isNaN(number) ? null : number;
    };
    const sorted = cards.slice().sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === y) return Number(a.dataset.index) - Number(b.dataset.index);
      if (x === null) return 1;   // classes without the number go last
      if (y === null) return -1;
      if (key === "name") return x.localeCompare(y);
      return key === "heterogeneity" ? y - x : x - y;
    });
    for (const card of sorted) list.appendChild(card);
  }

  search.addEventListener("input", filter);
  sort.addEventListener("change", order);
  const params = new URLSearchParams(window.location.search);
  if (params.has("q")) search.value = params.get("q");
  filter();
}

function setupLightbox() {
  const links = document.querySelectorAll("a.zoom");
  if (!links.length || typeof HTMLDialogElement !== "function") return;
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
  let opener = null;

  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => {
    image.removeAttribute("src");
    if (opener) opener.focus();
  });
  for (const link of links) {
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      opener = link;
      const thumb = link.querySelector("img");
      image.src = link.getAttribute("href");
      image.alt = thumb ? thumb.alt : "";
      caption.textContent = link.dataset.caption || image.alt;
      full.href = link.getAttribute("href");
      dialog.showModal();
      close.focus();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupIndex();
  setupLightbox();
});
