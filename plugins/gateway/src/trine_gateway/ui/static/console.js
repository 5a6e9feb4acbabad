// trine console: makes a run's page follow the run's event stream (server-sent events).
// Each event fetches the page's live part again, rendered by the server (/ui/runs/{id}/live),
// and swaps it in; the stream is closed after the run's final event. Without JavaScript the
// page reloads itself while the run is not final.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource || !window.fetch || live.dataset.final === "true") {
    return;
  }
  var state = document.getElementById("live-state");
  var actions = document.getElementById("actions");
  var types = JSON.parse(live.dataset.eventTypes);
  var finals = JSON.parse(live.dataset.finalTypes);
  var lastSeq = Number(live.dataset.lastSeq || "0");
  var source = null;
  var ended = false;
  var inflight = false;
  var again = false;

  function show(text, on) {
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("on", !!on);
  }

  // Which <details> are open, so that a swap keeps them open.
  function openDetails() {
    var keys = {};
    live.querySelectorAll("details[open]").forEach(function (d) {
      keys[detailsKey(d)] = true;
    });
    return keys;
  }
  function detailsKey(d) {
    var owner = d.parentElement && d.parentElement.closest("[id]");
    var summary = d.querySelector("summary");
    return (owner ? owner.id : "") + ":" + (summary ? summary.textContent.replace(/\(\d+\)/, "") : "");
  }

  function refresh() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    fetch(live.dataset.fragment, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var open = openDetails();
        live.innerHTML = html;
        live.querySelectorAll("details").forEach(function (d) {
          var key = detailsKey(d);
          if (key in open) d.open = true;
        });
        live.dataset.lastSeq = String(lastSeq);
      })
      .catch(function () {
        show("could not refresh: reload the page", false);
      })
      .then(function () {
        inflight = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function onEvent(event) {
    var seq = Number(event.lastEventId);
    if (seq) lastSeq = seq;
    if (finals.indexOf(event.type) >= 0) {
      ended = true;
      source.close();
      show("final", false);
      if (actions) actions.hidden = true;
    }
    refresh();
  }

  function open() {
    source = new EventSource(live.dataset.events + "?after=" + lastSeq);
    source.onopen = function () {
      show("live: following the run's events", true);
    };
    source.onerror = function () {
      if (!ended) show("reconnecting…", false);
    };
    types.forEach(function (type) {
      source.addEventListener(type, onEvent);
    });
    source.addEventListener(live.dataset.streamError, function () {
      ended = true;
      source.close();
      show("the event stream failed: reload the page", false);
    });
  }

  open();
})();
