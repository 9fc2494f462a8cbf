/* llm-gateway console: charts (uPlot) and copy buttons. Deferred; every page works without it. */
(function () {
  "use strict";

  // Each series says what it is (its tone); errors are red on every chart, cache hits green, and so on.
  var TONES = { primary: "#0b5cad", alt: "#8250df", good: "#1a7f37", bad: "#b42318", warn: "#9a6700" };
  var PAD = function (n) { return (n < 10 ? "0" : "") + n; };

  function setUpCopyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      var status = document.getElementById("copied");
      if (!field) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        function done(message) { if (status) status.textContent = message; }
        field.select();
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(
            function () { done("Copied to the clipboard."); },
            function () { done("Press Ctrl+C (or Cmd+C) to copy the selected key."); }
          );
        } else {
          done(document.execCommand && document.execCommand("copy")
            ? "Copied to the clipboard." : "Press Ctrl+C (or Cmd+C) to copy the selected key.");
        }
      });
    });
  }

  function formatter(unit) {
    return function (value) {
      if (value === null || value === undefined) return "–";
      if (unit === "$") return "$" + (Math.abs(value) >= 1 || value === 0 ? value.toFixed(2) : value.toPrecision(2));
      if (unit === "%") return value.toFixed(1) + "%";
      return Math.abs(value) >= 1000 ? value.toLocaleString("en-US", { maximumFractionDigits: 0 }) : String(+value.toFixed(2));
    };
  }

  // Ticks in UTC, ISO-like: "14:00" within a day (the date at midnight), "12-05" for days.
  function tick(step) {
    return function (ts) {
      var d = new Date(ts * 1e3);
      var day = PAD(d.getUTCMonth() + 1) + "-" + PAD(d.getUTCDate());
      if (step === "day" || d.getUTCHours() === 0) return day;
      return PAD(d.getUTCHours()) + ":00";
    };
  }

  function chart(area) {
    var source = document.getElementById(area.getAttribute("data-chart"));
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    var format = formatter(spec.unit);
    var series = [{ label: "Time (UTC)", value: spec.step === "hour" ? "{YYYY}-{MM}-{DD} {HH}:00" : "{YYYY}-{MM}-{DD}" }];
    var data = [spec.x];
    spec.series.forEach(function (one, index) {
      var colour = TONES[one.tone] || TONES.primary;
      series.push({
        label: one.label,
        stroke: colour,
        width: 2,
        fill: index === 0 && one.tone === "primary" ? colour + "22" : undefined,
        points: { show: spec.x.length <= 31, size: 4 },
        value: function (u, v) { return format(v); },
      });
      data.push(one.values);
    });
    var options = {
      width: Math.max(200, area.clientWidth),
      height: 200,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      series: series,
      scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [
        { stroke: "#57606a", grid: { stroke: "#eaeef2" }, values: function (u, splits) { return splits.map(tick(spec.step)); } },
        { stroke: "#57606a", grid: { stroke: "#eaeef2" }, size: 56, values: function (u, values) { return values.map(format); } },
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    var plot = new uPlot(options, data, area);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        var width = Math.max(200, area.clientWidth);
        if (Math.abs(width - plot.width) > 2) plot.setSize({ width: width, height: 200 });
      }).observe(area);
    }
  }

  function setUpCharts() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(chart);
  }

  setUpCopyButtons();
  setUpCharts();
})();
