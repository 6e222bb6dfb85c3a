// Estimator's page script. Plain forms work without it; with it, pages update themselves and
// votes are cast without a reload. No inline handlers: everything is wired here.
"use strict";

(() => {
  const body = document.body;
  // The page's own sentences in its language: data-message-* attributes of this script's tag.
  const messages = document.currentScript?.dataset || {};
  const regionsUrl = body.dataset.liveRegions;
  const eventsUrl = body.dataset.liveEvents;
  const interval = Number(body.dataset.livePoll || 1000);
  const lostBanner = document.getElementById("connection-lost");
  const titleEnd = " · Estimator";
  let version = Number(body.dataset.liveVersion || 0);
  let etag = null; // of the regions last polled
  let timer = null;

  // The voter's own card is theirs alone: the server shows it only on the page it rendered for
  // them, outside every region shared with others. From then on this page keeps it: it sets it
  // when its own vote is answered and forgets it when the round or the issue changes.
  const ownBox = document.getElementById("own-card");
  let own = { card: ownBox?.querySelector(".my-card")?.textContent.trim() || null, round: roundShown() };

  function roundShown() {
    const heading = document.querySelector("h1[data-issue-key]");
    return heading ? `${heading.dataset.issueKey}#${heading.dataset.round}#${heading.dataset.state}` : null;
  }

  function showOwnCard() {
    if (!ownBox) return;
    if (own.round !== roundShown()) own = { card: null, round: roundShown() };
    const slot = document.querySelector(".own-card-slot");
    if (slot && !slot.contains(ownBox)) slot.append(ownBox);
    const template = ownBox.querySelector(own.card ? "template.own-card-voted" : "template.own-card-none");
    const note = ownBox.querySelector(".vote-feedback");
    if (note && own.error) {
      // A refused vote's reason stays until the next vote or round, whatever updates come meanwhile.
      note.textContent = own.error;
      note.classList.add("text-danger");
    } else if (template && note && (own.card || note.querySelector(".my-card") || note.classList.contains("text-danger"))) {
      const fresh = template.content.firstElementChild.cloneNode(true);
      const card = fresh.querySelector("[data-my-card]");
      if (card) { card.textContent = own.card; card.classList.add("my-card"); }
      note.replaceWith(fresh);
    }
    document.querySelectorAll(".vote-form button[name=value]").forEach((button) => {
      const chosen = button.value === own.card;
      button.classList.toggle("selected", chosen);
      button.setAttribute("aria-pressed", chosen ? "true" : "false");
    });
    const number = document.querySelector(".vote-form input[name=value]");
    if (number && document.activeElement !== number) number.value = own.card && own.card !== "?" ? own.card : "";
  }

  function setConnected(connected) {
    if (lostBanner) lostBanner.classList.toggle("d-none", connected);
  }

  function editing(region) {
    const active = document.activeElement;
    return active && region.contains(active) && active.matches("input, textarea, select");
  }

  // How to find the focused element again once its region has been replaced.
  function focusKey(element) {
    if (!element || element === document.body) return null;
    if (element.id) return `#${CSS.escape(element.id)}`;
    if (element.name && element.value !== undefined) {
      return `${element.localName}[name="${CSS.escape(element.name)}"][value="${CSS.escape(element.value)}"]`;
    }
    return null;
  }

  function restoreFocus(key) {
    const element = key && document.querySelector(key);
    if (element && document.activeElement !== element) element.focus({ preventScroll: true });
  }

  // Regions the person is typing in wait until they leave them.
  const waiting = new Map();
  // What the server last sent for each region, comparable (below); at first, what the page shows.
  const sent = new Map();
  document.querySelectorAll("[data-live][id]").forEach((region) => {
    const content = document.createDocumentFragment();
    region.childNodes.forEach((node) => content.append(node.cloneNode(true)));
    sent.set(region.id, comparable(content));
  });

  // Swap in the regions the server sent (only those that changed), leaving alone a region in
  // which the person is typing. Focus stays on the same control across the swap.
  function apply(update) {
    if (!update || Number(update.version) < version) return;
    version = Number(update.version);
    const focused = focusKey(document.activeElement);
    Object.entries(update.regions || {}).forEach(([id, html]) => {
      const region = document.getElementById(id);
      if (!region) return;
      if (editing(region)) {
        if (!waiting.has(id)) region.addEventListener("focusout", () => swapWaiting(id), { once: true });
        waiting.set(id, html);
        return;
      }
      waiting.delete(id);
      swap(region, html);
    });
    if (update.title) document.title = update.title.trim() + titleEnd; // "All voted — …" reaches the tab too
    showOwnCard();
    startCountdowns();
    restoreFocus(focused);
  }

  function swap(region, html) {
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    const last = sent.get(region.id);
    sent.set(region.id, comparable(fresh.content.cloneNode(true)));
    if (last?.isEqualNode(sent.get(region.id))) return; // nothing to flash; focus and scroll stay put
    region.replaceChildren(fresh.content);
    region.classList.remove("live-flash");
    void region.offsetWidth; // restart the highlight animation
    region.classList.add("live-flash");
  }

  // What the server last sent for each region, as compared: the page's own touches since (its
  // voter's card, a busy button) are not the server's. A page that loaded just before a change is
  // sent every region once; those the change left alone differ only in white space between tags
  // and in indentation (regions come without the page's), in their CSRF tokens (each page load signs
  // its own, all valid for the whole session) and in the voter's own card (only the page itself
  // has it), so none of these counts.
  function comparable(content) {
    content.querySelectorAll("input[name=csrf_token]").forEach((input) => input.removeAttribute("value"));
    content.querySelectorAll("#own-card").forEach((box) => box.remove());
    const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
    const blank = [];
    while (walker.nextNode()) {
      const text = walker.currentNode;
      if (text.data.trim()) text.data = text.data.replace(/[ \t]*\n[ \t]*/g, "\n"); // line breaks stay: a description's count
      else blank.push(text);
    }
    blank.forEach((text) => text.remove());
    return content;
  }

  function swapWaiting(id) {
    const region = document.getElementById(id);
    if (!waiting.has(id) || !region) return;
    setTimeout(() => {
      if (editing(region)) return void region.addEventListener("focusout", () => swapWaiting(id), { once: true });
      swap(region, waiting.get(id));
      waiting.delete(id);
      showOwnCard();
    }, 0);
  }

  // The facilitator's timer: the server says how many seconds are left; this page counts down.
  function startCountdowns() {
    const now = performance.now();
    document.querySelectorAll(".countdown[data-seconds-left]:not([data-deadline])").forEach((clock) => {
      clock.dataset.deadline = String(now + Number(clock.dataset.secondsLeft) * 1000);
    });
    tick();
  }

  function tick() {
    document.querySelectorAll(".countdown[data-deadline]").forEach((clock) => {
      const left = Math.max(0, Math.ceil((Number(clock.dataset.deadline) - performance.now()) / 1000));
      clock.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      const box = clock.closest(".timer");
      box?.querySelector(".times-up")?.classList.toggle("d-none", left > 0);
      box?.classList.toggle("alert-danger", left === 0);
      box?.classList.toggle("alert-info", left > 0);
    });
  }

  // Typing a card's label votes for it (focus then stays on that card). "1" waits a moment when
  // "13" is a card too; anything typed into a field is left alone.
  let typed = "";
  let typedAt = 0;
  let typedTimer = null;

  function voteByKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.key.length !== 1) return;
    if (event.target.closest?.("input, textarea, select, [contenteditable]")) return;
    const buttons = [...document.querySelectorAll(".deck button[name=value]")];
    if (!buttons.length) return;
    const now = performance.now();
    typed = (now - typedAt < 900 ? typed : "") + event.key.toLowerCase();
    typedAt = now;
    let matching = buttons.filter((button) => button.value.toLowerCase().startsWith(typed));
    if (!matching.length) {
      typed = event.key.toLowerCase();
      matching = buttons.filter((button) => button.value.toLowerCase().startsWith(typed));
    }
    clearTimeout(typedTimer);
    const exact = matching.find((button) => button.value.toLowerCase() === typed);
    cueTyped(null);
    if (!exact) return;
    event.preventDefault();
    const choose = () => { typed = ""; cueTyped(null); exact.focus(); exact.click(); };
    if (matching.length === 1) return void choose();
    cueTyped(exact); // "2" may become "21": show that the page is waiting for another key
    typedTimer = setTimeout(choose, 700);
  }

  // The card a typed label will choose unless another key follows, marked, with a line saying so.
  function cueTyped(button) {
    document.querySelectorAll(".card-btn.typed-pending").forEach((each) => each.classList.remove("typed-pending"));
    document.querySelectorAll(".typed-cue").forEach((each) => each.remove());
    if (!button) return;
    button.classList.add("typed-pending");
    const line = document.createElement("p");
    line.className = "typed-cue small mb-0 mt-1";
    line.textContent = (messages.messageTypedWaiting || "“{typed}”: waiting a moment for another key")
      .replace("{typed}", button.value);
    button.closest(".deck")?.after(line);
  }

  // Without a stream, ask for the regions: an unchanged page costs the server a 304.
  async function poll() {
    try {
      const headers = { Accept: "application/json" };
      if (etag) headers["If-None-Match"] = etag;
      const response = await fetch(regionsUrl, { headers, cache: "no-store", credentials: "same-origin" });
      if (response.status === 401 || response.status === 404) {
        window.location.reload(); // logged out or removed: the page itself will say so
        return;
      }
      if (response.status !== 304 && !response.ok) throw new Error(`regions answered ${response.status}`);
      setConnected(true);
      etag = response.headers.get("ETag") || etag;
      if (response.status === 200) apply(await response.json());
    } catch (error) {
      setConnected(false);
    } finally {
      if (!streaming) schedule(interval);
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  // The group's event stream brings each change's regions: the page asks for nothing. While the
  // stream is down the page polls, and reconnects with a growing pause (1 s, 2 s, 4 s … at most
  // 30 s) so that a restarted server is not stormed; a server that cannot hold streams answers
  // 204, and the page then polls, trying the stream again now and then.
  let streaming = false;
  let failures = 0;
  let source = null;
  let reconnect = null;

  function listen() {
    clearTimeout(reconnect);
    source?.close();
    source = new EventSource(`${eventsUrl}&since=${version}`);
    source.addEventListener("open", () => {
      streaming = true;
      failures = 0;
      clearTimeout(timer);
      setConnected(true);
    });
    source.addEventListener("regions", (event) => {
      try { apply(JSON.parse(event.data)); } catch (error) { schedule(0); }
    });
    source.addEventListener("version", (event) => {
      // Its regions came just before; a page that missed them (it was busy) asks for them.
      if (Number(event.lastEventId) > version) schedule(0);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.OPEN) return;
      source.close();
      streaming = false;
      failures += 1;
      schedule(0); // poll meanwhile: it also notices a logout or a removal
      const pause = Math.min(30000, 1000 * 2 ** Math.min(failures - 1, 5));
      reconnect = setTimeout(listen, pause * (0.75 + Math.random() / 2));
    });
  }

  // The browser knows when its network goes: say so at once, and reconnect as soon as it is back.
  function offline() {
    clearTimeout(reconnect);
    source?.close();
    streaming = false;
    setConnected(false);
  }

  function online() {
    failures = 0;
    listen();
  }

  // Say why a vote was not saved, where the page normally confirms it.
  function voteError(message) {
    if (ownBox) {
      own.error = message;
      return void showOwnCard();
    }
    const box = document.querySelector(".vote-feedback");
    if (!box) return;
    box.textContent = message;
    box.classList.add("text-danger");
  }

  // Cast a vote with fetch; the CSRF token travels in the X-CSRFToken header. The answer is the
  // same whatever the card; the page shows the card it sent, and the others' screens (and this
  // one's voters list) follow from the change's event.
  async function vote(event) {
    const form = event.target;
    if (!form.matches(".vote-form")) return;
    event.preventDefault();
    const data = new FormData(form, event.submitter);
    const keepFocus = focusKey(event.submitter && document.activeElement === document.body
      ? event.submitter : document.activeElement);
    const token = form.querySelector("input[name=csrf_token]")?.value || "";
    if (form.dataset.sending) return; // one vote at a time from a form
    form.dataset.sending = "true";
    // The focused card stays enabled: a disabled one would drop the focus to the page, where a
    // screen reader starts over from the top.
    form.querySelectorAll("button").forEach((button) => { button.disabled = button !== document.activeElement; });
    try {
      const response = await fetch(form.action, {
        method: "POST", body: data, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": token },
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        voteError(answer.error || messages.messageVoteFailed || "Your vote could not be saved. Please try again.");
        return;
      }
      setConnected(true);
      own = { card: String(data.get("value")).trim(), round: roundShown() };
      showOwnCard();
    } catch (error) {
      setConnected(false);
      voteError(messages.messageOffline || "The server cannot be reached; your vote was not saved. Please try again.");
    } finally {
      delete form.dataset.sending;
      form.querySelectorAll("button").forEach((button) => { button.disabled = false; });
      restoreFocus(keepFocus);
    }
  }

  // A confirmation fades after a while unless the pointer or the focus is on it; a warning stays.
  document.querySelectorAll(".flash-stack .alert[role=status]").forEach((message) => {
    let hide = null;
    const later = () => { hide = setTimeout(() => message.querySelector(".btn-close")?.click(), 8000); };
    const hold = () => clearTimeout(hide);
    ["mouseenter", "focusin"].forEach((name) => message.addEventListener(name, hold));
    ["mouseleave", "focusout"].forEach((name) => message.addEventListener(name, later));
    later();
  });

  // A long upload (a tracker's file of up to 10 MiB) says that it is under way: the button is
  // busy and the page says "Importing…". Without the script the form posts just the same.
  function showBusy(event) {
    const form = event.target;
    if (!form.matches("[data-busy-form]") || event.defaultPrevented) return;
    if (form.dataset.busy) return void event.preventDefault(); // one upload at a time
    form.dataset.busy = "true";
    form.setAttribute("aria-busy", "true");
    const status = form.querySelector("[data-busy-status]");
    if (status) status.hidden = false;
    // disabled after the browser has read the form, so the button's own name and value still go
    setTimeout(() => form.querySelectorAll("[type=submit]").forEach((button) => {
      button.disabled = true;
      button.classList.add("busy");
    }), 0);
  }
  // Back from the browser's cache (the back button): the form is ready again.
  window.addEventListener("pageshow", () => document.querySelectorAll("form[data-busy]").forEach((form) => {
    delete form.dataset.busy;
    form.removeAttribute("aria-busy");
    form.querySelectorAll("[type=submit]").forEach((button) => { button.disabled = false; button.classList.remove("busy"); });
    form.querySelectorAll("[data-busy-status]").forEach((status) => { status.hidden = true; });
  }));

  document.addEventListener("submit", vote);
  document.addEventListener("submit", showBusy);
  document.addEventListener("keydown", voteByKey);
  showOwnCard();
  startCountdowns();
  setInterval(tick, 1000);

  document.addEventListener("click", (event) => {
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const input = document.querySelector(copy.dataset.copy);
      input.select();
      navigator.clipboard?.writeText(input.value).then(() => { copy.textContent = messages.messageCopied || "Copied"; }, () => {});
    }
    if (event.target.closest("[data-history-back]")) history.back();
  });

  if (eventsUrl && window.EventSource) {
    listen();
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
  } else if (regionsUrl) {
    schedule(interval);
  }
  if (regionsUrl) {
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !streaming) schedule(0); });
  }
})();

// Keyboard and screen readers. The deck is one stop for Tab: the arrow keys (and Home, End) move
// between its cards, Enter or Space votes. After every live change the page says what changed in
// the announcer region, in the page's language (the sentences come from its data-* attributes).
(() => {
  const announcer = document.getElementById("announcer");
  const said = announcer?.dataset || {};

  function announce(sentences) {
    const text = sentences.filter(Boolean).join(". ");
    if (!announcer || !text) return;
    announcer.textContent = ""; // the same sentence twice in a row is still read out
    setTimeout(() => { announcer.textContent = text; }, 100);
  }

  function fill(template, values) {
    return (template || "").replace(/\{(\w+)\}/g, (field, name) => values[name] ?? field);
  }

  function cardsOf(deck) {
    return [...deck.querySelectorAll("button[name=value]")];
  }

  // Roving focus: the focused card, else the voter's own, else the first is the deck's Tab stop.
  function rove() {
    document.querySelectorAll(".deck").forEach((deck) => {
      const cards = cardsOf(deck);
      const stop = cards.find((card) => card === document.activeElement)
        || cards.find((card) => card.classList.contains("selected")) || cards[0];
      cards.forEach((card) => { card.tabIndex = card === stop ? 0 : -1; });
    });
  }

  const moves = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 };

  function moveInDeck(event) {
    const card = event.target.closest?.(".deck button[name=value]");
    if (!card || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const cards = cardsOf(card.closest(".deck"));
    const at = cards.indexOf(card);
    let to;
    if (event.key === "Home") to = 0;
    else if (event.key === "End") to = cards.length - 1;
    else if (event.key in moves) to = (at + moves[event.key] + cards.length) % cards.length;
    else return;
    event.preventDefault();
    cards.forEach((other, index) => { other.tabIndex = index === to ? 0 : -1; });
    cards[to].focus();
  }

  // What a person sees change, read from the page itself: the issue, its round and state, who
  // has voted, the result and the final estimate.
  function snapshot() {
    const heading = document.querySelector("h1[data-issue-key]");
    return {
      key: heading?.dataset.issueKey ?? null,
      round: heading?.dataset.round ?? null,
      state: heading?.dataset.state ?? null,
      voted: new Set([...document.querySelectorAll("[data-voted=true] .voter-name")].map((e) => e.dataset.nickname)),
      everybody: Boolean(document.querySelector(".everybody-voted")),
      nudge: document.querySelector(".nudge")?.textContent.trim() || null,
      nudgedAt: document.querySelector(".nudge")?.dataset.nudged || null,
      average: document.querySelector(".result-average")?.textContent.trim() || null,
      estimate: document.querySelector(".final-estimate")?.textContent.trim() || null,
    };
  }

  function changes(before, after) {
    if (before.key !== after.key) {
      if (after.key) return [fill(said.nextIssue, { key: after.key })];
      return before.key ? [said.noIssue] : [];
    }
    if (!after.key) return [];
    if (before.round !== after.round) return [fill(said.newRound, { round: after.round })];
    const sentences = [...after.voted].filter((name) => !before.voted.has(name))
      .map((name) => fill(said.voted, { name }));
    if (after.everybody && !before.everybody) sentences.push(said.everybodyVoted);
    if (after.nudge && (after.nudge !== before.nudge || after.nudgedAt !== before.nudgedAt)) sentences.push(after.nudge);
    if (before.state === "voting" && after.state !== "voting") {
      sentences.push(after.average ? fill(said.revealed, { average: after.average }) : said.revealedNoAverage);
    }
    if (after.estimate && after.estimate !== before.estimate) {
      sentences.push(fill(said.finalEstimate, { estimate: after.estimate }));
    }
    return sentences;
  }

  let seen = snapshot();
  let pending = null;
  new MutationObserver((records) => {
    if (!records.some((record) => record.target.closest?.("[data-live]"))) return;
    clearTimeout(pending);
    pending = setTimeout(() => {
      rove();
      const now = snapshot();
      announce(changes(seen, now));
      seen = now;
    }, 0);
  }).observe(document.body, { childList: true, subtree: true });

  const banner = document.getElementById("connection-lost");
  if (banner) {
    let lost = !banner.classList.contains("d-none");
    new MutationObserver(() => {
      const now = !banner.classList.contains("d-none");
      if (now !== lost) announce([now ? said.connectionLost : said.connected]);
      lost = now;
    }).observe(banner, { attributes: true, attributeFilter: ["class"] });
  }

  // The facilitator drags an issue to another place in the backlog (the buttons beside each issue
  // do the same from the keyboard). The page moves it at once and says where it went; the
  // group's event brings every screen the new order.
  let dragged = null;

  function dropTarget(event) {
    const item = event.target.closest?.("li[data-move]");
    return dragged && item && item !== dragged ? item : null;
  }

  function endDrag() {
    document.querySelectorAll(".dragging, .drop-target").forEach((item) => item.classList.remove("dragging", "drop-target"));
    dragged = null;
  }

  async function drop(event) {
    const target = dropTarget(event);
    if (!target) return;
    event.preventDefault();
    const item = dragged;
    const place = target.dataset.place;
    target[Number(item.dataset.place) < Number(place) ? "after" : "before"](item);
    endDrag();
    const form = item.closest("form");
    const body = new FormData();
    body.set("to", "place");
    body.set("place", place);
    body.set("csrf_token", form?.querySelector("input[name=csrf_token]")?.value || "");
    try {
      const response = await fetch(item.dataset.move, {
        method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" },
      });
      const answer = await response.json().catch(() => ({}));
      announce([answer.moved || answer.error]);
    } catch (error) {
      window.location.reload(); // the server cannot be reached: show the order it has
    }
  }

  document.addEventListener("dragstart", (event) => {
    const item = event.target.closest?.("li[data-move]");
    if (!item) return;
    dragged = item;
    item.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", item.dataset.key);
  });
  document.addEventListener("dragover", (event) => {
    const target = dropTarget(event);
    if (!target) return;
    event.preventDefault();
    document.querySelectorAll(".drop-target").forEach((item) => item.classList.remove("drop-target"));
    target.classList.add("drop-target");
  });
  document.addEventListener("drop", drop);
  document.addEventListener("dragend", endDrag);

  document.addEventListener("keydown", moveInDeck);
  rove();
})();
