// bulkhead console: table filter and sort, and live refresh of pages that ask for it.
"use strict";
function cellValue(row, i) {
  const cell = row.cells[i];
  if (!cell) return "";
  const sorted = cell.querySelector("[data-sort]");
  return sorted ? sorted.dataset.sort : cell.textContent.trim();
}
function wire(root) {
  root.querySelectorAll("input.filter").forEach((input) => {
    const table = document.getElementById(input.dataset.table);
    if (!table) return;
    input.addEventListener("input", () => {
      const needle = input.value.toLowerCase();
      for (const row of table.tBodies[0].rows) {
        row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
      }
    });
  });
  root.querySelectorAll("table.sortable th").forEach((th, i) => {
    th.addEventListener("click", () => {
      const table = th.closest("table");
      const body = table.tBodies[0];
      const asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a, th.cellIndex), y = cellValue(b, th.cellIndex);
        const nx = parseFloat(x), ny = parseFloat(y);
        const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
}
// A part marked data-refresh="MS" is fetched again every MS milliseconds and
// swapped in: from its data-src when it has one (a page of that part alone),
// else from the page's own address; the fresh copy is the element of the same
// id, else the first part marked so.
function refresh(part) {
  const every = parseInt(part.dataset.refresh, 10);
  const source = part.dataset.src || location.href;
  setInterval(async () => {
    if (document.hidden) return;
    const response = await fetch(source, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = part.id ? doc.getElementById(part.id) : doc.querySelector("[data-refresh]");
    if (fresh && fresh.innerHTML !== part.innerHTML) {
      part.innerHTML = fresh.innerHTML;
      wire(part);
    }
  }, every);
}
// The header shows the fleet graph's generation, polled from /api/status.
async function watchGeneration() {
  const live = document.getElementById("live");
  if (!live) return;
  setInterval(async () => {
    if (document.hidden) return;
    const response = await fetch("/api/status");
    if (!response.ok) return;
    const status = await response.json();
    live.textContent = "gen " + status.generation;
    if (String(status.generation) !== document.body.dataset.generation) live.classList.add("stale");
  }, 2000);
}
wire(document);
document.querySelectorAll("[data-refresh]").forEach(refresh);
watchGeneration();
