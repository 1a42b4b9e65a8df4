// The events page's live tail: new events arrive as server-sent events and are added at the
// top of the table. Everything is built with textContent, never parsed as HTML. Without
// JavaScript the page still lists the events; reloading shows new ones.
"use strict";

function cell(row, text, href) {
  const td = row.insertCell();
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text || "";
  }
  return td;
}

function addEvent(tbody, event) {
  const empty = tbody.querySelector("tr.empty");
  if (empty) empty.remove();
  const row = tbody.insertRow(0);
  row.className = "fresh";
  const when = new Date(event.received_at).toISOString().slice(0, 19).replace("T", " ");
  cell(row, when, "/events/" + encodeURIComponent(event.id));
  cell(row, event.source);
  cell(row, event.type);
  cell(row, event.contact, event.contact && "/timeline?contact=" + encodeURIComponent(event.contact));
  cell(row, event.campaign, event.campaign && "/timeline?campaign=" + encodeURIComponent(event.campaign));
  const td = cell(row, "");
  for (const d of event.deliveries) {
    const span = document.createElement("span");
    span.className = "state " + d.state;
    span.textContent = d.sink + ": " + d.state;
    td.appendChild(span);
    td.appendChild(document.createTextNode(" "));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("tail-status");
  const table = document.getElementById("events");
  if (!status || !table || !window.EventSource) return;
  const source = new EventSource(status.dataset.stream);
  source.onopen = () => { status.textContent = "Live: new events appear at the top."; status.dataset.live = "yes"; };
  source.onerror = () => { status.textContent = "Live tail interrupted; retrying…"; status.dataset.live = "no"; };
  source.onmessage = (message) => addEvent(table.tBodies[0], JSON.parse(message.data));
});
