// The railyard inspector's one script: draws the mermaid diagrams and keeps the page live.
// A page names its event stream in <body data-events>; on each `change` event it fetches
// itself again (?partial=1) and swaps every [data-live] section whose data-key changed.
(function () {
  "use strict";

  function draw(root) {
    if (!window.mermaid) return;
    const blocks = Array.from(root.querySelectorAll("pre.mermaid:not([data-processed])"));
    if (blocks.length) window.mermaid.run({ nodes: blocks });
  }

  function withPartial(href) {
    const url = new URL(href);
    url.searchParams.set("partial", "1");
    url.searchParams.delete("done");
    return url.toString();
  }

  let refreshing = false;
  let again = false;

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(withPartial(window.location.href), { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const section of fresh.querySelectorAll("[data-live]")) {
        const old = section.id && document.getElementById(section.id);
        if (!old) continue;
        if (old.dataset.key === section.dataset.key) continue;
        const focused = old.contains(document.activeElement);
        if (focused && old.querySelector("form.answer")) continue; // never under a person's typing
        old.replaceWith(document.importNode(section, true));
      }
      draw(document);
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || "0") + 1);
    } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }

  function follow() {
    const stream = document.body.dataset.events;
    if (!stream || !window.EventSource) return;
    const dot = document.getElementById("live-dot");
    const source = new EventSource(stream);
    source.addEventListener("open", function () { if (dot) dot.classList.add("on"); });
    source.addEventListener("error", function () { if (dot) dot.classList.remove("on"); });
    source.addEventListener("change", refresh);
  }

  window.addEventListener("DOMContentLoaded", function () {
    if (window.mermaid) {
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
    }
    draw(document);
    follow();
  });
})();
