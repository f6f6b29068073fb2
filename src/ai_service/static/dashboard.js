// ai-service dashboard: charts from the page's embedded JSON, copy buttons, confirmations.
(function () {
  "use strict";
  var PALETTE = ["#2f5bea", "#f79009", "#12b76a", "#7a5af8", "#ee46bc", "#06aed4", "#98a2b3"];
  var STATUS = { ok: "#12b76a", error: "#f04438", cancelled: "#f79009" };

  function usd(value) {
    var digits = value !== 0 && Math.abs(value) < 0.01 ? 6 : 2;
    return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function barChart(canvas, labels, datasets, money) {
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: function (ctx) {
            var v = ctx.parsed.y;
            return ctx.dataset.label + ": " + (money ? usd(v) : v.toLocaleString("en-US"));
          } } }
        },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: money ? undefined : 0, callback: function (v) {
            return money ? usd(v) : (Number.isInteger(v) ? v.toLocaleString("en-US") : "");
          } } }
        }
      }
    });
  }

  function drawCharts() {
    var source = document.getElementById("chart-data");
    if (!source || !window.Chart) { return; }
    var data = JSON.parse(source.textContent);
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var kind = canvas.getAttribute("data-chart");
      var chart = data[kind];
      var datasets;
      if (kind === "status") {
        datasets = ["ok", "error", "cancelled"].map(function (name) {
          return { label: name, data: chart[name], backgroundColor: STATUS[name] };
        });
        barChart(canvas, chart.labels, datasets, false);
        return;
      }
      var measure = canvas.getAttribute("data-measure");
      datasets = chart[measure].map(function (set, i) {
        return { label: set.label, data: set.data, backgroundColor: PALETTE[i % PALETTE.length] };
      });
      barChart(canvas, chart.labels, datasets, measure === "spend");
    });
  }

  function wireCopyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = document.getElementById(button.getAttribute("data-copy")).textContent;
        if (navigator.clipboard) {
          navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
        }
      });
    });
  }

  function wireConfirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts();
    wireCopyButtons();
    wireConfirmations();
  });
})();
