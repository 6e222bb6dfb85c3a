// Estimator's page script. Plain forms work without it; with it, pages update themselves and
// votes are cast without a reload. No inline handlers: everything is wired here.
"use strict";

(() => {
  const body = document.body;
  // The page's own sentences in its language: data-message-* attributes of this script's tag.
  const messages = document.currentScript?.dataset || {};
  const api = body.dataset.liveApi;
  const interval = Number(body.dataset.livePoll || 1000);
  const lostBanner = document.getElementById("connection-lost");
  let etag = body.dataset.liveEtag || null;
  let refreshing = null;
  let timer = null;

  // The server HTML each live region was last given, to replace only regions that changed.
  // CSRF tokens are signed afresh on every page, so they are left out of the comparison.
  const lastHtml = new Map();
  const comparable = (html) => html.replace(/(name="csrf_token"[^>]*value=")[^"]*/g, "$1");
  document.querySelectorAll("[data-live][id]").forEach((region) => {
    lastHtml.set(region.id, comparable(region.innerHTML));
  });

  // The server names the voter's own card in one place only (so that a page's size never depends
  // on it); the deck shows it chosen from there.
  function markOwnCard() {
    const card = document.querySelector(".my-card")?.textContent.trim() || null;
    document.querySelectorAll(".vote-form button[name=value]").forEach((button) => {
      const chosen = button.value === card;
      button.classList.toggle("selected", chosen);
      button.setAttribute("aria-pressed", chosen ? "true" : "false");
    });
    const number = document.querySelector(".vote-form input[name=value]");
    if (number && document.activeElement !== number) number.value = card && card !== "?" ? card : "";
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

  // Fetch this page again and swap in the live regions whose server HTML changed, leaving
  // alone a region in which the person is typing (it is updated when they leave it) unless
  // `force` (after their own vote). Focus stays on the same control across the swap.
  async function refreshRegions(force = false, keepFocus = null) {
    const response = await fetch(window.location.href, {
      headers: { "X-Requested-With": "fetch" }, cache: "no-store", credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`page answered ${response.status}`);
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const focused = keepFocus || focusKey(document.activeElement);
    fresh.querySelectorAll("[data-live][id]").forEach((incoming) => {
      const region = document.getElementById(incoming.id);
      const html = comparable(incoming.innerHTML);
      if (!region || lastHtml.get(incoming.id) === html) return;
      if (editing(region) && !force) {
        region.addEventListener("focusout", () => schedule(0), { once: true });
        return;
      }
      region.innerHTML = incoming.innerHTML;
      lastHtml.set(incoming.id, html);
      region.classList.remove("live-flash");
      void region.offsetWidth; // restart the highlight animation
      region.classList.add("live-flash");
    });
    if (fresh.title) document.title = fresh.title; // "All voted — …" reaches the tab too
    etag = fresh.body?.dataset.liveEtag || etag; // what the page now shows, for the next poll
    version = Number(fresh.body?.dataset.liveVersion || version);
    markOwnCard();
    startCountdowns();
    restoreFocus(focused);
  }

  // One refresh at a time; a forced one (after one's own vote) runs after any refresh already on
  // its way, which may have started before the vote and must not stand in for it.
  function refreshOnce(force = false, keepFocus = null) {
    if (refreshing && !force) return refreshing;
    const before = refreshing || Promise.resolve();
    const mine = before.catch(() => {}).then(() => refreshRegions(force, keepFocus))
      .finally(() => { if (refreshing === mine) refreshing = null; });
    refreshing = mine;
    return mine;
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
    if (!exact) return;
    event.preventDefault();
    const choose = () => { typed = ""; exact.focus(); exact.click(); };
    if (matching.length === 1) choose();
    else typedTimer = setTimeout(choose, 700);
  }

  // Ask the JSON API whether anything changed (a HEAD: the page renders itself, not the JSON);
  // an unchanged state costs the server a 304 and next to nothing else.
  async function poll() {
    try {
      const headers = { Accept: "application/json" };
      if (etag) headers["If-None-Match"] = etag;
      const response = await fetch(api, {
        method: "HEAD", headers, cache: "no-store", credentials: "same-origin",
      });
      if (response.status === 401 || response.status === 404) {
        window.location.reload(); // logged out or removed: the page itself will say so
        return;
      }
      if (response.status !== 304 && !response.ok) throw new Error(`api answered ${response.status}`);
      setConnected(true);
      if (response.status === 200) {
        const newTag = response.headers.get("ETag");
        if (newTag !== etag) await refreshOnce();
        etag = newTag;
      }
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

  // The group's event stream says when its version changes; the page then fetches its own
  // regions once. While the stream is down the page polls, and reconnects with a growing pause
  // (1 s, 2 s, 4 s … at most 30 s) so that a restarted server is not stormed.
  const eventsUrl = body.dataset.liveEvents;
  let version = Number(body.dataset.liveVersion || 0);
  let streaming = false;
  let failures = 0;

  let source = null;
  let reconnect = null;

  function listen() {
    clearTimeout(reconnect);
    source?.close();
    source = new EventSource(eventsUrl);
    let told = 0;
    source.addEventListener("open", () => {
      streaming = true;
      failures = 0;
      clearTimeout(timer);
      setConnected(true);
    });
    source.addEventListener("version", (event) => {
      const announced = Number(event.lastEventId);
      // The first event tells the version at connection time: the page may already show it.
      if (announced !== version || told > 0) refreshOnce().catch(() => schedule(0));
      version = announced;
      told += 1;
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
  function voteError(form, message) {
    const region = form.closest("[data-live]");
    const box = region?.querySelector(".vote-feedback");
    if (!box) return;
    lastHtml.delete(region.id); // the page no longer shows what the server sent: swap it next time
    box.textContent = message;
    box.classList.add("text-danger");
  }

  // Cast a vote with fetch; the CSRF token travels in the X-CSRFToken header.
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
        voteError(form, answer.error || messages.messageVoteFailed || "Your vote could not be saved. Please try again.");
        return;
      }
      setConnected(true);
      await refreshOnce(true, keepFocus); // shows the chosen card, from the server's own page
    } catch (error) {
      setConnected(false);
      voteError(form, messages.messageOffline || "The server cannot be reached; your vote was not saved. Please try again.");
    } finally {
      delete form.dataset.sending;
      form.querySelectorAll("button").forEach((button) => { button.disabled = false; });
    }
  }

  document.addEventListener("submit", vote);
  document.addEventListener("keydown", voteByKey);
  markOwnCard();
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

  if (api && eventsUrl && window.EventSource) {
    listen();
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
  } else if (api) {
    schedule(interval);
  }
  if (api) {
    document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(0); });
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
    const names = (selector) => new Set([...document.querySelectorAll(selector)].map((e) => e.textContent.trim()));
    return {
      key: heading?.dataset.issueKey ?? null,
      round: heading?.dataset.round ?? null,
      state: heading?.dataset.state ?? null,
      voted: names("[data-voted=true] .voter-name"),
      everybody: Boolean(document.querySelector(".everybody-voted")),
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

  document.addEventListener("keydown", moveInDeck);
  rove();
})();
