// The railyard inspector's one script: draws the mermaid diagrams and keeps the page live.
// A page names its event stream in <body data-events> and its own address in <body data-page>;
// on each `change` event (and whenever the stream opens) it fetches its address again
// (?partial=1) and swaps every [data-live] section whose data-key changed, except one a
// person is typing in. A hidden tab closes its stream (browsers allow a few connections a host).
(function () {
  "use strict";

  function draw(root) {
    if (!window.mermaid) return;
    const blocks = Array.from(root.querySelectorAll("pre.mermaid:not([data-processed])"));
    if (blocks.length) {
      window.mermaid.run({ nodes: blocks }).catch(function (error) {
        for (const block of blocks) block.dataset.problem = String(error && error.message || error);
      });
    }
  }

  function pageAddress() {
    const url = new URL(document.body.dataset.page || window.location.pathname, window.location.href);
    url.searchParams.set("partial", "1");
    return url.toString();
  }

  function busy(section) {
    const focused = document.activeElement;
    if (focused && focused !== document.body && section.contains(focused)) return true;
    return section.querySelector("form.answer[data-touched]") !== null; // a half-written answer stays
  }

  let refreshing = false;
  let again = false;
  let held = false; // a section was left as it was for a person typing in it: catch up when they leave it

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(pageAddress(), { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const section of fresh.querySelectorAll("[data-live]")) {
        const old = section.id && document.getElementById(section.id);
        if (!old || old.dataset.key === section.dataset.key) continue;
        if (busy(old)) { held = true; continue; }
        old.replaceWith(document.importNode(section, true));
      }
      draw(document);
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || "0") + 1);
    } catch (error) {
      // the server is gone or restarting: the stream's reconnect brings the next refresh
    } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }

  let source = null;

  function follow() {
    const stream = document.body.dataset.events;
    if (!stream || !window.EventSource || source) return;
    const dot = document.getElementById("live-dot");
    source = new EventSource(stream);
    source.addEventListener("open", function () {
      if (dot) dot.classList.add("on");
      refresh(); // whatever changed before the stream opened (or while it reconnected)
    });
    source.addEventListener("error", function () { if (dot) dot.classList.remove("on"); });
    source.addEventListener("change", refresh);
  }

  function pause() {
    if (!source) return;
    source.close();
    source = null;
    const dot = document.getElementById("live-dot");
    if (dot) dot.classList.remove("on");
  }

  window.addEventListener("DOMContentLoaded", function () {
    if (window.mermaid) {
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
    }
    draw(document);
    const page = document.body.dataset.page;
    if (page && window.location.pathname !== new URL(page, window.location.href).pathname) {
      window.history.replaceState(null, "", page); // after a refused answer, the address is the run's again
    }
    document.addEventListener("input", function (event) {
      const form = event.target && event.target.closest && event.target.closest("form");
      if (form && form.method === "post") form.dataset.touched = "1";
    });
    document.addEventListener("focusout", function () {
      if (held) { held = false; window.setTimeout(refresh, 0); }
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") pause(); else follow();
    });
    window.addEventListener("pagehide", pause);
    if (document.visibilityState !== "hidden") follow();
  });
})();
