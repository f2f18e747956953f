// ctrbench board: sort any table by a click on its column header, filter tables by dataset, paper
// table and model. No dependencies; the page works from disk (file://).
(function () {
  "use strict";

  function sortValue(cell, numeric) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) raw = cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }

  function sortTable(table, column, header) {
    var numeric = header.getAttribute("data-type") === "num";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortValue(a.cells[column], numeric);
      var y = sortValue(b.cells[column], numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1; // empty cells last, whatever the direction
      if (y === null) return -1;
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function makeSortable(table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, column) {
      th.classList.add("sort");
      th.setAttribute("tabindex", "0");
      th.setAttribute("title", "sort by " + th.textContent.trim());
      th.addEventListener("click", function () { sortTable(table, column, th); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortTable(table, column, th);
        }
      });
    });
  }

  function applyFilters() {
    var dataset = document.getElementById("filter-dataset");
    var paper = document.getElementById("filter-paper");
    var model = document.getElementById("filter-model");
    if (!dataset || !paper || !model) return;
    var wantDataset = dataset.value, wantPaper = paper.value;
    var wantModel = model.value.trim().toLowerCase();
    var shownTables = 0, shownRows = 0;
    document.querySelectorAll("section.board-table").forEach(function (section) {
      var datasets = section.getAttribute("data-dataset").split(", ");
      var show = (!wantDataset || datasets.indexOf(wantDataset) >= 0) &&
        (!wantPaper || section.getAttribute("data-paper") === wantPaper);
      var rows = 0;
      section.querySelectorAll("tbody tr").forEach(function (row) {
        var text = (row.getAttribute("data-model") + " " + row.getAttribute("data-label")).toLowerCase();
        var match = !wantModel || text.indexOf(wantModel) >= 0;
        row.hidden = !match;
        if (match) rows += 1;
      });
      section.hidden = !show || rows === 0;
      if (!section.hidden) { shownTables += 1; shownRows += rows; }
    });
    var count = document.getElementById("filter-count");
    if (count) count.textContent = shownTables + " table(s), " + shownRows + " row(s) shown";
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  ["filter-dataset", "filter-paper", "filter-model"].forEach(function (id) {
    var element = document.getElementById(id);
    if (!element) return;
    element.addEventListener("input", applyFilters);
    element.addEventListener("change", applyFilters);
  });
  applyFilters();
})();
