/*
 * agentstream chat page: plain JavaScript, no build step, nothing loaded from elsewhere.
 *
 * The wire protocol is docs/protocol.md. One turn is in flight at a time. Every ask carries a
 * requestId, so after a dropped connection the page reconnects with backoff and either re-sends the
 * ask (same requestId: the server names the same turn) or resumes the turn it knows. A turn's
 * events keep the seq they were first sent with, so a resume names the last seq the page has
 * (fromSeq) and gets only what came after it: the text so far stays and the rest is appended.
 * Events are applied in seq order, once; a gap means frames were lost, and the page reconnects and
 * resumes to get the rest. While the agent is silent, `progress` events show in the turn's bubble;
 * a turn resumed in another tab (`superseded`) ends here and is not resumed again.
 *
 * Signing in: when config.json (next to the page) names a Cognito domain and app client, the page
 * signs in with the authorization code flow and PKCE (signin.js), keeps the tokens in memory only,
 * renews the access token before it expires and reconnects with it; otherwise it takes a token
 * pasted into its Connection panel (the local development tokens).
 *
 * History: once it has a token, the page reads the current conversation's turns from the REST API
 * (GET /v1/conversations/{id}, docs/rest.md) and shows them as they ended; a turn still running is
 * resumed over the WebSocket like one in flight. Its History panel lists past conversations
 * (GET /v1/conversations) to go back to. The REST API is config.json's restUrl or, for a page the
 * local stack serves, the page's own origin; without either there is no history (and no error).
 * What it reads stays in memory: the only thing kept across a reload is the conversation's id.
 *
 * Documents (issue #12): "Upload" describes each chosen file over the WebSocket (`upload`), POSTs it
 * to the presigned S3 URL the server answers (FormData: every field, then the file last) and shows
 * a row per document in the Documents panel that `document` events move on (the summary and topics
 * once analysed, or why it failed). While that panel is open, or an upload from here is under way,
 * each connection (a reconnect too) asks for `documents`: events missed while disconnected are not
 * replayed, the list says where each document stands.
 */
(function () {
  "use strict";

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var MAX_ATTEMPTS = 10;
  var MAX_PROMPT_CHARS = 25000;
  // API Gateway closes a connection after 10 minutes without client frames; while a long turn is
  // in flight the page pings now and then so that it is not cut off mid-answer.
  var KEEPALIVE_MS = 4 * 60 * 1000;

  // Every error code of the protocol, said plainly. The server's own message follows it.
  var ERRORS = {
    invalid_request: "The server could not accept this request",
    unauthorized: "Not signed in: reconnect with a valid token",
    rate_limited: "Too many questions at once",
    quota_exceeded: "Your token budget is used up for now",
    throttled: "The agent is busy right now (throttled)",
    not_found: "That turn was not found",
    agent_error: "The agent failed to answer",
    guardrail: "A guardrail stopped the answer",
    interrupted: "The answer was interrupted before it finished",
    superseded: "Continued in another window or tab",
    cancelled: "Cancelled",
    internal: "Something went wrong inside agentstream",
  };

  var $ = function (id) {
    return document.getElementById(id);
  };
  var els = {
    status: $("status"),
    statusText: $("status-text"),
    trace: $("trace-toggle"),
    newConversation: $("new-conversation"),
    settings: $("settings"),
    settingsForm: $("settings-form"),
    url: $("url"),
    token: $("token"),
    disconnect: $("disconnect"),
    conversationId: $("conversation-id"),
    notice: $("notice"),
    noticeText: $("notice-text"),
    noticeAction: $("notice-action"),
    noticeClose: $("notice-close"),
    transcript: $("transcript"),
    empty: $("empty"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    cancel: $("cancel"),
    user: $("user"),
    signIn: $("sign-in"),
    signOut: $("sign-out"),
    tokenField: $("token-field"),
    tokenHint: $("token-hint"),
    signinHint: $("signin-hint"),
    history: $("history"),
    historyStatus: $("history-status"),
    historyList: $("history-list"),
    historyMore: $("history-more"),
    upload: $("upload"),
    uploadFile: $("upload-file"),
    documents: $("documents"),
    documentsCount: $("documents-count"),
    documentsStatus: $("documents-status"),
    documentsList: $("documents-list"),
  };

  // ---- small helpers -------------------------------------------------------------------------

  function load(storage, key, fallback) {
    try {
      var value = window[storage].getItem("agentstream." + key);
      return value === null ? fallback : value;
    } catch (e) {
      return fallback;
    }
  }

  function save(storage, key, value) {
    try {
      if (value === null || value === undefined) window[storage].removeItem("agentstream." + key);
      else window[storage].setItem("agentstream." + key, value);
    } catch (e) {
      /* private mode: settings last as long as the page */
    }
  }

  function newId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes); // works on http:// too, unlike randomUUID
    return Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function codePoints(text) {
    return Array.from(text).length;
  }

  // A character the server counts as visible (AskMessage.prompt in chalicelib/protocol.schema.json):
  // a question of only spaces and zero-width or control characters is refused.
  var VISIBLE = /[^\s\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8]/;

  function seconds(ms) {
    var s = ms / 1000;
    return (s >= 10 ? Math.round(s) : s.toFixed(1)) + " s";
  }

  // A server's retryAfterMs in words: seconds for a rate limit, hours or days for a spent budget.
  function waitWords(ms) {
    var s = Math.max(1, Math.ceil(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.ceil(s / 60);
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60);
    m = m % 60;
    if (h < 24) return h + " h" + (m ? " " + m + " min" : "");
    return Math.floor(h / 24) + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
  }

  // ---- settings --------------------------------------------------------------------------------

  function defaultUrl() {
    if (location.protocol === "http:" || location.protocol === "https:") {
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
    }
    return "ws://127.0.0.1:8000";
  }

  var keptConversation = load("sessionStorage", "conversationId", ""); // from before a reload
  var settings = {
    url: load("localStorage", "url", "") || defaultUrl(),
    token: load("sessionStorage", "token", ""),
    trace: load("localStorage", "trace", "false") === "true",
    conversationId: keptConversation || newId(),
  };

  // Signing in (signin.js), when config.json names a Cognito domain. The tokens live here, in
  // this tab's memory only (never localStorage or sessionStorage): see signin.js for why.
  var auth = {
    ready: false, // config.json read
    config: {}, // config.json; signIn: true when it names a domain and an app client
    access: null,
    refresh: null,
    user: "",
    refreshes: 0, // access tokens renewed with the refresh token so far
    renewedAt: 0, // when the last access token arrived (ms)
    refreshTimer: null,
  };
  // Renew the access token this long before it expires (at most halfway through its life).
  var REFRESH_MARGIN_S = 60;

  var urlFromHash = false; // a #url= wins over config.json's wsUrl

  function readHash() {
    // #token=...&url=... fills the settings in; the token then leaves the address bar.
    if (!location.hash || location.hash.length < 2) return false;
    var params = new URLSearchParams(location.hash.slice(1));
    if (!params.has("token") && !params.has("url")) return false;
    var pasted = !auth.config.signIn; // signed in, the page takes no pasted token
    if (params.get("token") !== null && pasted) settings.token = params.get("token");
    if (params.get("url")) {
      settings.url = params.get("url");
      urlFromHash = true;
    }
    if (pasted) save("sessionStorage", "token", settings.token);
    save("localStorage", "url", settings.url);
    try {
      history.replaceState(null, "", location.pathname + location.search);
    } catch (e) {
      /* file:// */
    }
    return true;
  }
  readHash();
  save("sessionStorage", "conversationId", settings.conversationId);

  function withToken(url, token) {
    return url + (url.indexOf("?") === -1 ? "?" : "&") + "token=" + encodeURIComponent(token);
  }

  function tokenProblem(token) {
    // A look inside the JWT (never trusted, only to say what is wrong when the server refuses it).
    var parts = token.split(".");
    if (parts.length !== 3) return "it is not a JWT (three dot-separated parts)";
    try {
      var json = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      var payload = JSON.parse(atob(json + "===".slice((json.length + 3) % 4)));
      if (typeof payload.exp === "number" && payload.exp * 1000 < Date.now()) {
        return "it expired at " + new Date(payload.exp * 1000).toLocaleString();
      }
    } catch (e) {
      return "it is not a readable JWT";
    }
    return null;
  }

  // ---- status and notices ------------------------------------------------------------------

  function setStatus(state, text) {
    els.status.setAttribute("data-state", state);
    els.statusText.textContent = text;
  }

  var noticeHandler = null;

  function showNotice(text, kind, actionLabel, action) {
    els.notice.hidden = false;
    els.notice.setAttribute("data-kind", kind || "info");
    els.noticeText.textContent = text;
    noticeHandler = action || null;
    els.noticeAction.hidden = !action;
    els.noticeAction.textContent = actionLabel || "";
  }

  function hideNotice(kind) {
    if (!kind || els.notice.getAttribute("data-kind") === kind) els.notice.hidden = true;
  }

  // ---- the connection ----------------------------------------------------------------------

  var ws = null;
  var everOpened = false; // with the current URL and token
  var attempt = 0;
  var retryTimer = null;
  var unauthorizedStreak = 0;

  function isOpen() {
    return ws !== null && ws.readyState === WebSocket.OPEN;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (ws !== null) return; // connecting or open
    if (!auth.ready) return; // start() connects once config.json is read
    if (auth.refresh && tokenProblem(settings.token) && Date.now() - auth.renewedAt > 30000) {
      // The access token expired while the renewal timer slept (a suspended laptop): renew first.
      setStatus("connecting", "Renewing the sign-in…");
      refreshSession(true);
      return;
    }
    if (!settings.url) {
      setStatus("idle", "Set the WebSocket URL to connect");
      els.settings.open = true;
      return;
    }
    if (!settings.token && auth.config.signIn) {
      showSignedOut();
      showNotice("Sign in to chat.", "connection", "Sign in", beginSignIn);
      if (turn !== null && !turn.finished) setTurnStatus(turn, "Not sent: sign in first");
      return;
    }
    if (!settings.token) {
      setStatus("refused", "Enter a token to connect");
      showNotice("A token is needed to connect (for the local stack: the one make run printed, or make token).", "connection");
      els.settings.open = true;
      return;
    }
    var socket;
    try {
      socket = new WebSocket(withToken(settings.url, settings.token));
    } catch (e) {
      setStatus("failed", "Not a WebSocket URL");
      showNotice("\"" + settings.url + "\" is not a WebSocket URL; it starts with ws:// or wss://.", "connection");
      els.settings.open = true;
      return;
    }
    var opened = false;
    ws = socket;
    setStatus(attempt ? "reconnecting" : "connecting", attempt ? "Reconnecting (attempt " + attempt + ")…" : "Connecting…");
    socket.onopen = function () {
      if (socket !== ws) return;
      opened = true;
      everOpened = true;
      attempt = 0;
      setStatus("open", "Connected");
      hideNotice("connection");
      flushTurn();
      documentsOnOpen();
    };
    socket.onmessage = function (message) {
      if (socket === ws) onFrame(message.data);
    };
    socket.onerror = function () {
      /* the close event that follows says what can be said */
    };
    socket.onclose = function (event) {
      if (socket !== ws) return; // a socket we already let go of
      ws = null;
      onClosed(opened, event);
    };
  }

  function disconnect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    attempt = 0;
    if (ws !== null) {
      var socket = ws;
      ws = null;
      socket.close(1000, "bye");
    }
    setStatus("idle", "Disconnected");
  }

  function reconnectNow() {
    // Drop this socket (it lost frames or lost its sign-in) and open a new one at once.
    if (ws !== null) {
      var socket = ws;
      ws = null;
      socket.close(4000, "resync");
    }
    connect();
  }

  function onClosed(opened, event) {
    // A document uploaded from here is still on its way: keep a connection for its events.
    var inFlight = (turn !== null && !turn.finished) || documentsInProgress();
    if (!opened && !everOpened) {
      refused();
      return;
    }
    if (opened && !inFlight && (event.code === 1000 || event.code === 1001)) {
      // The server closed an idle connection: reconnect only when there is something to send.
      setStatus("idle", "Disconnected (" + (event.reason || "closed by the server") + "); sending reconnects");
      return;
    }
    scheduleReconnect(opened ? "Connection lost" : "Could not reconnect");
  }

  function refused() {
    if (auth.config.signIn) {
      setStatus("refused", "Refused: sign in again");
      showNotice("The server refused the connection: the sign-in was not accepted (expired or revoked), or the " +
        "server is down. Sign in again.", "connection", "Sign in", beginSignIn);
      if (turn !== null && !turn.finished) setTurnStatus(turn, "Not sent yet: waiting for a connection");
      return;
    }
    var problem = tokenProblem(settings.token);
    var text = problem
      ? "The server refused the connection: the token was not accepted, " + problem + ". "
      : "The server refused the connection before it opened: the token was not accepted " +
        "(wrong, expired, or for another stack), or the URL is wrong or the server is down. ";
    setStatus("refused", "Refused: check the token");
    showNotice(text + "Paste a new token (locally: make token) and connect again.", "connection", "Retry", function () {
      attempt = 0;
      connect();
    });
    els.settings.open = true;
    if (turn !== null && !turn.finished) setTurnStatus(turn, "Not sent yet: waiting for a connection");
  }

  function scheduleReconnect(why) {
    if (attempt >= MAX_ATTEMPTS) {
      var problem = tokenProblem(settings.token);
      setStatus("failed", "Gave up reconnecting");
      showNotice("Could not reconnect after " + MAX_ATTEMPTS + " attempts" + (problem ? ": the token " + problem : "") +
        ". The answer in progress is kept on the server; reconnect to get it.", "connection", "Reconnect", function () {
        attempt = 0;
        connect();
      });
      return;
    }
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    var delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2); // "equal jitter"
    attempt += 1;
    setStatus("reconnecting", why + "; reconnecting in " + (delay / 1000).toFixed(1) + " s (attempt " + attempt + " of " + MAX_ATTEMPTS + ")");
    if (turn !== null && !turn.finished) setTurnStatus(turn, "Connection lost: the answer continues on the server; reconnecting…");
    retryTimer = setTimeout(connect, delay);
  }

  function send(message) {
    if (!isOpen()) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  // ---- turns -------------------------------------------------------------------------------

  var turn = null; // the turn in flight, or the last one

  // `before`: the turn's place in the transcript (a restored turn goes before those asked since).
  function Turn(prompt, before) {
    this.prompt = prompt;
    this.requestId = newId();
    this.conversationId = settings.conversationId;
    this.trace = settings.trace;
    this.turnId = null;
    this.sent = false;
    this.resuming = false;
    this.resumeFrom = 0; // the fromSeq of the resume in flight
    this.resumeTimer = null; // a resume the server refused for now, sent again when it says
    this.resumes = 0;
    this.lastSeq = 0; // the last seq applied: a resume asks for the events after it
    this.text = "";
    this.progress = null; // "still working · 12 s · …" while the agent is silent; cleared by text
    this.traces = [];
    this.toolForms = {};
    this.finished = false;
    this.cancelRequested = false;
    this.restored = false; // read back from the REST API after a reload or from History
    this.view = renderTurn(this, before);
  }

  function ask(prompt) {
    if (turn !== null && !turn.finished) return;
    turn = new Turn(prompt);
    askedHere[turn.requestId] = true;
    updateButtons();
    if (isOpen()) flushTurn();
    else connect();
  }

  function flushTurn() {
    var t = turn;
    if (t === null || t.finished) return;
    if (t.turnId) {
      resume(t);
      return;
    }
    var message = { action: "ask", prompt: t.prompt, requestId: t.requestId, conversationId: t.conversationId };
    if (t.trace) message.trace = true;
    if (send(message)) {
      t.sent = true;
      setTurnStatus(t, "Sent; waiting for the agent…");
    }
  }

  function resume(t) {
    // Only the events after the last one applied come: what they added stays.
    clearTimeout(t.resumeTimer);
    t.resumeTimer = null;
    t.resuming = true;
    t.resumeFrom = t.lastSeq;
    if (send({ action: "resume", turnId: t.turnId, fromSeq: t.resumeFrom })) setTurnStatus(t, "Resuming…");
  }

  function cancel() {
    var t = turn;
    if (t === null || t.finished) return;
    t.cancelRequested = true;
    if (!t.sent) {
      finish(t, { error: { code: "cancelled", message: "Cancelled before it was sent.", retryable: false } });
      return;
    }
    setTurnStatus(t, "Cancelling…");
    els.cancel.disabled = true;
    if (t.turnId && !t.resuming) send({ action: "cancel", turnId: t.turnId });
    // Otherwise the cancel goes out as soon as the turn's `accepted` names it.
  }

  function onFrame(data) {
    var event;
    try {
      event = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (event === null || typeof event !== "object") return;
    if (typeof event.type !== "string") {
      onGatewayFrame(event);
      return;
    }
    if (event.type === "pong") return;
    if (event.type === "accepted") onAccepted(event);
    else if (event.type === "upload") onUploadAnswer(event);
    else if (event.type === "document") onDocumentEvent(event);
    else if (event.type === "documents") onDocumentsList(event);
    else if (event.type === "error" && !event.turnId) onBareError(event);
    else onTurnEvent(event);
  }

  function onAccepted(event) {
    var t = turn;
    if (t === null || t.finished) return;
    if (t.turnId ? event.turnId !== t.turnId : event.requestId !== t.requestId) return;
    unauthorizedStreak = 0;
    var again = t.turnId !== null; // a resume, or the turn going on after tool results
    t.turnId = event.turnId;
    t.view.root.setAttribute("data-turn-id", t.turnId);
    if (event.duplicate && !t.resuming) {
      // The ask had reached the server before the drop: its events went to the old connection.
      resume(t);
      return;
    }
    var resumedFrom = t.resuming ? t.resumeFrom : 0;
    if (t.resuming) t.resumes += 1;
    t.resuming = false;
    clearTimeout(t.resumeTimer);
    t.resumeTimer = null;
    // A resume's events are those after its fromSeq, numbered as they were first sent: the text so
    // far stays. After any other `accepted` (the ask's, tool results', a resume from 0) they start
    // again at seq 1 with the whole answer so far. Traces and files are not repeated: those stay.
    t.lastSeq = resumedFrom;
    if (!resumedFrom) t.text = "";
    renderAnswer(t);
    if (!again) setTurnStatus(t, "Accepted; waiting for the agent…");
    else setTurnStatus(t, t.resumes ? "Resumed after a reconnect…" : "Going on…");
    if (t.cancelRequested) send({ action: "cancel", turnId: t.turnId });
    updateButtons();
  }

  function onTurnEvent(event) {
    var t = turn;
    if (t === null || t.finished || event.turnId !== t.turnId) return;
    // Until a resume's `accepted`, events are the old stream's; but a resume in another tab ends
    // the turn here even then.
    if (t.resuming && !(event.type === "error" && event.code === "superseded")) return;
    if (event.type === "progress") {
      // Not numbered, never replayed: the agent is still at it, though silent for a while.
      t.progress = ["still working", seconds(Number(event.elapsedMs) || 0)]
        .concat(typeof event.phase === "string" && event.phase ? [event.phase] : []).join(" · ");
      renderAnswer(t);
      return;
    }
    // Events are applied in seq order, once; an error ends the turn even when its seq repeats
    // one (a cancel of a turn waiting for tool results numbers its error 1 again).
    if (typeof event.seq === "number") {
      if (event.seq <= t.lastSeq && event.type !== "error") return; // already applied
      if (event.seq > t.lastSeq + 1) {
        setTurnStatus(t, "Frames were lost; getting the answer again…");
        reconnectNow(); // the new connection resumes the turn from seq 1
        return;
      }
      t.lastSeq = Math.max(t.lastSeq, event.seq);
    }
    switch (event.type) {
      case "chunk":
        t.text += event.text;
        t.progress = null;
        setTurnStatus(t, t.resumes ? "Resumed after a reconnect; streaming…" : "Streaming…");
        scheduleRender(t);
        break;
      case "trace":
        t.traces.push(event.trace);
        renderTraces(t);
        break;
      case "return_control":
        t.progress = null;
        renderToolForm(t, event);
        break;
      case "files":
        renderFiles(t, event.files);
        break;
      case "done":
        finish(t, { stats: event.stats || null });
        break;
      case "error":
        finish(t, { error: event });
        break;
      default:
        break; // a newer server's event: ignore it
    }
  }

  function onBareError(event) {
    var t = turn;
    var forTurn = t !== null && !t.finished && !t.turnId && t.sent &&
      (!event.requestId || event.requestId === t.requestId);
    if (event.code === "unauthorized" && unauthorizedStreak < 1 && t !== null && !t.finished) {
      // The connection lost its sign-in (its record expired): sign in again and re-send.
      unauthorizedStreak += 1;
      showNotice(describe(event) + " Reconnecting…", "connection");
      if (auth.refresh) refreshSession(); // a new access token, then a new connection
      else reconnectNow();
      return;
    }
    // An error naming no turn may answer an upload or documents (they carry no requestId); one
    // naming the ask's requestId is the ask's.
    var askedByTurn = t !== null && Boolean(event.requestId) && event.requestId === t.requestId;
    if (!askedByTurn && documentsClaim(event)) return;
    if (forTurn) {
      finish(t, { error: event });
      return;
    }
    if (event.code === "rate_limited" && t !== null && !t.finished && t.resuming) {
      // Too many messages on this connection: resume once more when the server says, not in a loop.
      var wait = typeof event.retryAfterMs === "number" ? event.retryAfterMs : 1000;
      clearTimeout(t.resumeTimer);
      t.resumeTimer = setTimeout(function () {
        t.resumeTimer = null;
        if (turn === t && !t.finished && t.resuming) resume(t);
      }, wait);
      setTurnStatus(t, "Too many messages for now; resuming in " + seconds(wait) + "…");
      return;
    }
    showNotice(describe(event), "error");
  }

  function onGatewayFrame(frame) {
    var message = String(frame.message || "");
    var t = turn;
    if (message === "Endpoint request timed out") {
      showNotice("API Gateway timed out waiting for the server (29 s). The answer may still arrive.", "info");
    } else if (message === "Internal server error" && t !== null && !t.finished && !t.turnId && t.sent) {
      finish(t, { error: { code: "internal", message: "API Gateway answered \"Internal server error\": the server failed to handle the question.", retryable: true } });
    } else {
      showNotice("API Gateway: " + message, "error");
    }
  }

  function describe(error) {
    var title = ERRORS[error.code] || "Error";
    var text = title + " (" + error.code + "): " + (error.message || "");
    if (typeof error.retryAfterMs === "number") text += " Try again in " + waitWords(error.retryAfterMs) + ".";
    return text;
  }

  function finish(t, outcome) {
    t.finished = true;
    t.progress = null;
    clearTimeout(t.resumeTimer);
    t.resumeTimer = null;
    renderAnswer(t);
    var box = t.view.outcome;
    box.replaceChildren();
    if (outcome.error) {
      var error = outcome.error;
      // Cancelled or continued elsewhere (superseded) are not failures; the rest are.
      t.view.root.setAttribute("data-state", error.code === "cancelled" || error.code === "superseded" ? error.code : "error");
      var line = el("div", "error-box");
      line.setAttribute("role", "alert");
      line.appendChild(el("strong", "error-title", ERRORS[error.code] || "Error"));
      line.appendChild(el("code", "error-code", error.code || "error"));
      line.appendChild(el("p", "error-message", error.message || ""));
      if (typeof error.retryAfterMs === "number") {
        line.appendChild(el("p", "error-hint", "You may ask again in " + waitWords(error.retryAfterMs) + "."));
      }
      if (error.retryable) {
        var retry = el("button", "secondary retry", "Ask again");
        retry.type = "button";
        retry.addEventListener("click", function () {
          ask(t.prompt);
        });
        line.appendChild(retry);
      }
      box.appendChild(line);
      setTurnStatus(t, error.code === "cancelled" ? "Cancelled"
        : error.code === "superseded" ? "Resumed in another window or tab; the answer goes on there"
        : "Ended with an error");
    } else {
      t.view.root.setAttribute("data-state", "done");
      setTurnStatus(t, statsLine(outcome.stats, t));
    }
    Array.prototype.forEach.call(t.view.tool.querySelectorAll("form"), function (form) {
      Array.prototype.forEach.call(form.elements, function (field) { field.disabled = true; });
    });
    updateButtons();
    els.prompt.focus();
  }

  function statsLine(stats, t) {
    var parts = [];
    if (stats) {
      parts.push(stats.characters + " characters");
      if (typeof stats.firstTokenMs === "number") parts.push("first text after " + stats.firstTokenMs + " ms");
      if (typeof stats.durationMs === "number") parts.push((stats.durationMs / 1000).toFixed(1) + " s");
    }
    if (t.resumes) parts.push("resumed " + t.resumes + "×");
    return parts.length ? parts.join(" · ") : "Done";
  }

  // ---- rendering -----------------------------------------------------------------------------

  function nearBottom() {
    var doc = document.scrollingElement || document.documentElement;
    return doc.scrollHeight - doc.scrollTop - doc.clientHeight < 80;
  }

  function keepScrolled(wasNear) {
    if (wasNear) window.scrollTo(0, document.body.scrollHeight);
  }

  function renderTurn(t, before) {
    els.empty.hidden = true;
    var root = el("article", "turn");
    root.setAttribute("data-state", "streaming");
    var user = el("div", "msg user");
    user.appendChild(el("div", "bubble", t.prompt));
    var assistant = el("div", "msg assistant");
    var bubble = el("div", "bubble");
    var answer = el("div", "answer markdown");
    var typing = el("div", "typing");
    typing.setAttribute("aria-label", "waiting for the answer");
    typing.appendChild(el("span", "dot"));
    typing.appendChild(el("span", "dot"));
    typing.appendChild(el("span", "dot"));
    var typingLabel = el("span", "typing-label", "");
    typing.appendChild(typingLabel);
    var traces = el("details", "traces");
    traces.hidden = true;
    var summary = el("summary", "", "Trace");
    var traceList = el("ol", "trace-list");
    traces.appendChild(summary);
    traces.appendChild(traceList);
    var tool = el("div", "tool");
    var files = el("div", "files");
    var outcome = el("div", "outcome");
    bubble.appendChild(traces);
    bubble.appendChild(answer);
    bubble.appendChild(typing);
    bubble.appendChild(files);
    bubble.appendChild(tool);
    bubble.appendChild(outcome);
    assistant.appendChild(bubble);
    var meta = el("div", "meta", "");
    assistant.appendChild(meta);
    root.appendChild(user);
    root.appendChild(assistant);
    els.transcript.insertBefore(root, before || null);
    keepScrolled(true);
    return { root: root, answer: answer, typing: typing, typingLabel: typingLabel, traces: traces, summary: summary, traceList: traceList, tool: tool, files: files, outcome: outcome, meta: meta };
  }

  var renderPending = null;

  function scheduleRender(t) {
    if (renderPending === t) return;
    renderPending = t;
    // One render per frame however many chunks arrive; a hidden tab renders at the end.
    window.requestAnimationFrame(function () {
      if (renderPending === t) {
        renderPending = null;
        renderAnswer(t);
      }
    });
  }

  function renderAnswer(t) {
    var wasNear = nearBottom();
    t.view.answer.replaceChildren(window.AgentMarkdown.render(t.text));
    // The dots while nothing has come yet, and with a "still working" label while the agent is
    // silent (before its first text or between two parts of it).
    t.view.typing.hidden = t.finished || (t.text.length > 0 && !t.progress);
    t.view.typingLabel.textContent = t.progress || "";
    t.view.typing.setAttribute("aria-label", t.progress || "waiting for the answer");
    keepScrolled(wasNear);
  }

  function renderTraces(t) {
    t.view.traces.hidden = false;
    t.view.summary.textContent = "Trace (" + t.traces.length + (t.traces.length === 1 ? " step)" : " steps)");
    var item = el("li");
    item.appendChild(el("pre", "", JSON.stringify(t.traces[t.traces.length - 1], null, 2)));
    t.view.traceList.appendChild(item);
  }

  function setTurnStatus(t, text) {
    t.view.meta.textContent = text;
  }

  function renderFiles(t, files) {
    (Array.isArray(files) ? files : []).forEach(function (file) {
      var line = el("div", "file");
      line.appendChild(el("span", "file-icon", "📎"));
      var label = String(file.name || "file") + " (" + (file.type || "unknown type") + ", " + Number(file.size || 0).toLocaleString() + " bytes)";
      if (typeof file.content === "string") {
        var bytes;
        try {
          bytes = Uint8Array.from(atob(file.content), function (c) { return c.charCodeAt(0); });
        } catch (e) {
          bytes = null;
        }
        if (bytes) {
          // Always a download, never shown in the page: an agent's HTML file must not run here.
          var link = el("a", "", label);
          link.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
          link.setAttribute("download", String(file.name || "file").replace(/[\\/]/g, "_"));
          line.appendChild(link);
        } else {
          line.appendChild(el("span", "", label + ": unreadable content"));
        }
      } else {
        line.appendChild(el("span", "", label + (file.note ? ": " + file.note : "")));
      }
      t.view.files.appendChild(line);
    });
  }

  function renderToolForm(t, event) {
    // The agent asks the client to run tools (return of control): one answer box per input.
    var known = t.toolForms[event.invocationId];
    if (known) {
      // Asked again (a resume of a turn still waiting): the results did not arrive; send again.
      Array.prototype.forEach.call(known.elements, function (field) { field.disabled = false; });
      t.view.typing.hidden = true;
      setTurnStatus(t, "Waiting for your tool results");
      return;
    }
    var inputs = Array.isArray(event.inputs) ? event.inputs : [];
    var form = el("form", "tool-form");
    t.toolForms[event.invocationId] = form;
    form.appendChild(el("strong", "", "The agent asks you to run " + (inputs.length === 1 ? "a tool" : inputs.length + " tools")));
    var fields = inputs.map(function (input, index) {
      var fn = input && input.functionInvocationInput;
      var api = input && input.apiInvocationInput;
      var spec = fn || api || {};
      var box = el("fieldset");
      box.appendChild(el("legend", "", fn ? (spec.actionGroup || "") + " › " + (spec.function || "")
        : api ? (spec.actionGroup || "") + " › " + (spec.httpMethod || "") + " " + (spec.apiPath || "") : "tool " + (index + 1)));
      var params = el("dl", "params");
      (Array.isArray(spec.parameters) ? spec.parameters : []).forEach(function (p) {
        params.appendChild(el("dt", "", String(p && p.name)));
        params.appendChild(el("dd", "", String(p && p.value)));
      });
      if (api && api.requestBody) {
        params.appendChild(el("dt", "", "request body"));
        params.appendChild(el("dd", "", JSON.stringify(api.requestBody)));
      }
      if (!fn && !api) params.appendChild(el("dd", "", JSON.stringify(input)));
      box.appendChild(params);
      var label = el("label", "", "Result");
      var area = el("textarea");
      area.name = "result-" + index;
      area.rows = 2;
      area.required = true;
      area.placeholder = "What the tool returned";
      label.appendChild(area);
      box.appendChild(label);
      form.appendChild(box);
      return { fn: fn, api: api, spec: spec, area: area };
    });
    var submit = el("button", "", "Send results");
    submit.type = "submit";
    form.appendChild(submit);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var results = fields.map(function (f) {
        if (f.api) {
          return { apiResult: { actionGroup: f.spec.actionGroup, apiPath: f.spec.apiPath, httpMethod: f.spec.httpMethod,
            httpStatusCode: 200, responseBody: { "application/json": { body: f.area.value } } } };
        }
        var result = { actionGroup: f.spec.actionGroup, responseBody: { TEXT: { body: f.area.value } } };
        if (f.spec.function) result["function"] = f.spec.function;
        return { functionResult: result };
      });
      if (send({ action: "return_control", turnId: t.turnId, invocationId: event.invocationId, results: results })) {
        // The request for tools is not part of what a replay keeps (the events after the results
        // are numbered from its seq on); should the results be lost, a resume asks again.
        if (typeof event.seq === "number") t.lastSeq = Math.min(t.lastSeq, event.seq - 1);
        Array.prototype.forEach.call(form.elements, function (field) { field.disabled = true; });
        setTurnStatus(t, "Results sent; waiting for the agent…");
      } else {
        setTurnStatus(t, "Not connected: the results were not sent; try again once reconnected");
      }
    });
    t.view.tool.appendChild(form);
    t.view.typing.hidden = true; // it is the person's turn now
    setTurnStatus(t, "Waiting for your tool results");
    var first = form.querySelector("textarea");
    if (first) first.focus();
  }

  function updateButtons() {
    var busy = turn !== null && !turn.finished;
    els.send.disabled = busy;
    els.cancel.disabled = !busy || (turn !== null && turn.cancelRequested);
    els.newConversation.disabled = busy;
    // Another conversation only once this answer ended (as for "New conversation").
    Array.prototype.forEach.call(els.historyList.querySelectorAll("button"), function (button) {
      button.disabled = busy;
    });
  }


  // ---- documents (issue #12): upload, then follow each document's statuses ----------------------

  // The type to declare for each extension the server reads (docs/protocol.md, "Documents"): the
  // first it accepts, whatever the browser guesses (File.type is "" for some files). Any other
  // file goes with the browser's type, and the server says why it cannot take it.
  var DOCUMENT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  };
  var PIPELINE = ["uploaded", "extracted", "ingesting", "indexed", "analysed"];
  var DOCUMENT_STATUS = {
    uploaded: "Uploaded; reading it…",
    extracted: "Text read; indexing…",
    ingesting: "Indexing…",
    indexed: "Indexed: questions can find it; analysing…",
    analysed: "Analysed",
    failed: "Failed",
    deleted: "Deleted",
  };
  var ENDED = { analysed: true, failed: true, deleted: true };

  var docs = {
    rows: {}, // documentId -> row
    queue: [], // rows of chosen files not yet described to the server
    asking: null, // the row whose `upload` answer is awaited: one at a time, since it names no request
    listing: false, // a `documents` is awaited
    listTimer: null,
    panelOpen: load("localStorage", "documentsOpen", "false") === "true",
  };

  function contentTypeOf(file) {
    var match = /(\.[^.]+)$/.exec(file.name);
    var extension = match && match[1].length < file.name.length ? match[1].toLowerCase() : "";
    return DOCUMENT_TYPES[extension] || file.type || "application/octet-stream";
  }

  function documentsInProgress() {
    if (docs.asking || docs.queue.length) return true;
    return Object.keys(docs.rows).some(function (id) {
      var row = docs.rows[id];
      return row.local && !row.problem && !ENDED[row.status];
    });
  }

  function requestDocuments() {
    clearTimeout(docs.listTimer);
    docs.listTimer = null;
    if (send({ action: "documents" })) {
      docs.listing = true;
      if (!els.documentsList.children.length) els.documentsStatus.textContent = "Loading…";
    }
  }

  function documentsOnOpen() {
    docs.listing = false; // whatever was asked went to the old connection
    if (docs.panelOpen || documentsInProgress()) requestDocuments();
    if (docs.asking) {
      // Its answer, if any, went to the old connection: describe the file again (an upload URL
      // nobody uses expires; nothing was stored).
      docs.queue.unshift(docs.asking);
      docs.asking = null;
    }
    pumpUploads();
  }

  function uploadFiles(files) {
    if (!files.length) return;
    showDocuments(true);
    files.forEach(function (file) {
      var row = newRow(null, file.name, true);
      row.file = file;
      row.contentType = contentTypeOf(file);
      setRowText(row, isOpen() ? "Waiting…" : "Waiting for the connection…");
      docs.queue.push(row);
    });
    pumpUploads();
  }

  function pumpUploads() {
    if (docs.asking || !docs.queue.length) return;
    if (!isOpen()) {
      connect(); // its `open` comes back here
      return;
    }
    var row = docs.queue.shift();
    if (send({ action: "upload", fileName: row.fileName, contentType: row.contentType, size: row.file.size })) {
      docs.asking = row;
      setRowText(row, "Asking where to upload it…");
    } else {
      docs.queue.unshift(row);
    }
  }

  function onUploadAnswer(event) {
    var row = docs.asking;
    if (row === null || typeof event.documentId !== "string" || typeof event.url !== "string") return;
    docs.asking = null;
    row.documentId = event.documentId;
    row.view.root.setAttribute("data-document-id", row.documentId);
    docs.rows[row.documentId] = row;
    postToStorage(row, event.url, event.fields && typeof event.fields === "object" ? event.fields : {});
    pumpUploads(); // the next file is described while this one travels
  }

  // The presigned POST: every field as the server gave it, in its order, then the file, last.
  function postToStorage(row, url, fields) {
    var form = new FormData();
    Object.keys(fields).forEach(function (name) {
      form.append(name, String(fields[name]));
    });
    form.append("file", row.file, row.fileName);
    setRowText(row, "Uploading " + sizeWords(row.file.size) + "…");
    fetch(url, { method: "POST", body: form, mode: "cors", credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" })
      .then(function (answer) {
        if (answer.ok) {
          row.file = null;
          if (!row.status) setRowText(row, "Stored; waiting for the pipeline…");
          return null;
        }
        return answer.text().then(function (text) {
          var error = storageError(answer.status, text);
          rowProblem(row, "storage", "Storage refused the file (" + error.code + ")", error.message);
        });
      })
      .catch(function (error) {
        // The POST may still have arrived (an answer CORS hides): a `document` event would say so.
        if (!row.status) rowProblem(row, "storage", "Could not reach the storage", String(error && error.message || error));
      });
  }

  // S3's <Error><Code>…</Code><Message>…</Message></Error>, or the status when there is none.
  function storageError(status, text) {
    var code = "HTTP " + status;
    var message = "";
    try {
      var xml = new DOMParser().parseFromString(text, "application/xml");
      var codeNode = xml.querySelector("Error > Code");
      var messageNode = xml.querySelector("Error > Message");
      if (codeNode) code = codeNode.textContent.trim();
      if (messageNode) message = messageNode.textContent.trim();
    } catch (e) {
      /* not XML */
    }
    return { code: code, message: message || String(text || "").slice(0, 300) };
  }

  function onDocumentEvent(event) {
    if (typeof event.documentId !== "string") return;
    applyDocument(docs.rows[event.documentId] || newRow(event.documentId, event.fileName, false), event);
  }

  function onDocumentsList(event) {
    docs.listing = false;
    var entries = Array.isArray(event.documents) ? event.documents : [];
    entries.forEach(function (entry) {
      if (!entry || typeof entry.documentId !== "string") return;
      applyDocument(docs.rows[entry.documentId] || newRow(entry.documentId, entry.fileName, false, true), entry);
    });
    els.documentsStatus.textContent = els.documentsList.children.length ? "" : "No documents yet: Upload adds one.";
  }

  // An error naming no turn: the refusal of the upload being described, or of `documents`.
  function documentsClaim(event) {
    var later = (event.code === "rate_limited" || event.code === "throttled") && event.retryable;
    var wait = typeof event.retryAfterMs === "number" ? event.retryAfterMs : 1000;
    if (docs.asking) {
      var row = docs.asking;
      docs.asking = null;
      if (later) {
        docs.queue.unshift(row);
        setRowText(row, "Too many requests for now; trying again in " + waitWords(wait) + "…");
        setTimeout(pumpUploads, wait);
      } else {
        rowProblem(row, "refused", ERRORS[event.code] || "Refused", event.message || "");
        pumpUploads();
      }
      return true;
    }
    if (docs.listing) {
      docs.listing = false;
      if (later) docs.listTimer = setTimeout(requestDocuments, wait);
      else els.documentsStatus.textContent = "The server does not list documents now: " + (event.message || event.code);
      return true;
    }
    return false;
  }

  function applyDocument(row, entry) {
    var status = entry.status;
    if (typeof status !== "string") return;
    var rank = PIPELINE.indexOf(status);
    var had = PIPELINE.indexOf(row.status);
    if (rank !== -1 && had !== -1 && rank < had) return; // a late event: the document is further on
    if (typeof entry.fileName === "string" && entry.fileName) row.fileName = entry.fileName;
    row.status = status;
    row.problem = null;
    row.code = typeof entry.code === "string" ? entry.code : "";
    row.message = typeof entry.message === "string" ? entry.message : "";
    row.analysis = entry.analysis && typeof entry.analysis === "object" ? entry.analysis : null;
    if (typeof entry.updatedAt === "number") row.updatedAt = entry.updatedAt;
    renderRow(row);
  }

  function newRow(documentId, fileName, local, atEnd) {
    var root = el("li", "document");
    var head = el("div", "document-head");
    var name = el("span", "document-name", String(fileName || "(unnamed)"));
    var state = el("span", "document-state", "");
    head.appendChild(name);
    head.appendChild(state);
    var detail = el("p", "document-detail", "");
    var topics = el("ul", "document-topics");
    topics.setAttribute("aria-label", "Topics");
    root.appendChild(head);
    root.appendChild(detail);
    root.appendChild(topics);
    if (documentId) root.setAttribute("data-document-id", documentId);
    if (atEnd) els.documentsList.appendChild(root);
    else els.documentsList.insertBefore(root, els.documentsList.firstChild); // newest first
    var row = { documentId: documentId, fileName: String(fileName || ""), local: local, status: null, problem: null,
      code: "", message: "", analysis: null, updatedAt: 0, file: null, contentType: "",
      view: { root: root, name: name, state: state, detail: detail, topics: topics } };
    if (documentId) docs.rows[documentId] = row;
    els.documentsStatus.textContent = "";
    countDocuments();
    renderRow(row);
    return row;
  }

  function countDocuments() {
    var count = els.documentsList.children.length;
    els.documentsCount.textContent = count ? "(" + count + ")" : "";
  }

  function setRowText(row, text) {
    row.view.root.setAttribute("data-state", row.status || row.problem || "pending");
    row.view.state.textContent = text;
  }

  // Before any status: the upload was refused, or never reached the storage.
  function rowProblem(row, kind, title, message) {
    row.problem = kind;
    row.file = null;
    setRowText(row, title);
    row.view.detail.textContent = message;
    row.view.detail.hidden = !message;
  }

  function renderRow(row) {
    var view = row.view;
    view.name.textContent = row.fileName || "(unnamed)";
    if (row.updatedAt) view.root.title = "Updated " + dateOf(row.updatedAt);
    if (!row.status) {
      view.detail.hidden = true;
      view.topics.hidden = true;
      return;
    }
    setRowText(row, DOCUMENT_STATUS[row.status] || row.status);
    var detail = "";
    if (row.status === "failed") detail = (row.code ? "(" + row.code + ") " : "") + row.message;
    else if (row.status === "analysed" && row.analysis) detail = String(row.analysis.summary || "");
    view.detail.textContent = detail;
    view.detail.hidden = !detail;
    var topics = row.status === "analysed" && row.analysis && Array.isArray(row.analysis.topics) ? row.analysis.topics : [];
    view.topics.replaceChildren();
    topics.forEach(function (topic) {
      view.topics.appendChild(el("li", "", String(topic)));
    });
    view.topics.hidden = !topics.length;
  }

  function sizeWords(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function showDocuments(open) {
    if (open && !els.documents.open) els.documents.open = true; // its toggle event lists them
  }

  // ---- history: the conversation's turns and past conversations (REST) --------------------------

  var HISTORY_PAGE = 20; // conversations per "More"
  var TURNS_PAGE = 50; // turns per request while restoring (the API's maximum)
  var MAX_PAGES = 200; // a cursor that never ends is the server's bug, not a reason to loop forever
  var LOCAL_HOSTS = /^(127\.0\.0\.1|localhost|\[::1\])$/;

  var askedHere = {}; // requestIds asked from this page in this conversation: not restored twice
  // The conversation whose turns the transcript shows (read back, or new: a tab that kept no
  // conversation id starts a new one, with nothing to read).
  var restoredId = keptConversation ? null : settings.conversationId;
  var restoreGeneration = 0; // a restore answered after the conversation changed is dropped
  var historyList = { generation: 0, cursor: null, loading: false, ids: {} };

  // Where the REST API is: config.json's restUrl; otherwise, for a page the local stack serves
  // (a loopback origin whose WebSocket is the page's own host), the page's origin (/v1/...).
  // Otherwise none: a deployed page without restUrl simply has no history.
  function restBase() {
    var configured = auth.config.restUrl;
    if (typeof configured === "string" && /^https?:\/\//i.test(configured)) return configured.replace(/\/+$/, "");
    if (location.protocol !== "http:" && location.protocol !== "https:") return null;
    if (!LOCAL_HOSTS.test(location.hostname)) return null;
    try {
      return new URL(settings.url).host === location.host ? location.origin : null;
    } catch (e) {
      return null;
    }
  }

  function historyAvailable() {
    return auth.ready && Boolean(settings.token) && restBase() !== null;
  }

  // GET base + path with the bearer token (the WebSocket's, from memory); null for a 404.
  function restGet(path) {
    var base = restBase();
    var token = settings.token;
    if (!base || !token) return Promise.reject(new Error("no REST API"));
    return fetch(base + path, {
      headers: { Authorization: "Bearer " + token },
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    }).then(function (answer) {
      if (answer.status === 404) return null;
      if (!answer.ok) throw new Error("the REST API answered " + answer.status);
      return answer.json();
    });
  }

  function pagedPath(path, limit, cursor) {
    return path + "?limit=" + limit + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  }

  // Every turn of the current conversation, oldest first (every page); shown before any turn
  // asked here meanwhile. Failures leave the transcript as it is: history is a convenience.
  function restoreConversation() {
    var generation = ++restoreGeneration;
    var id = settings.conversationId;
    var turns = [];
    var pages = 0;
    function next(cursor) {
      return restGet(pagedPath("/v1/conversations/" + encodeURIComponent(id), TURNS_PAGE, cursor)).then(function (body) {
        if (body === null) return turns; // no turn in it yet
        if (body && Array.isArray(body.turns)) turns = turns.concat(body.turns);
        pages += 1;
        return body && typeof body.cursor === "string" && body.cursor && pages < MAX_PAGES ? next(body.cursor) : turns;
      });
    }
    next(null).then(function (all) {
      if (generation !== restoreGeneration || id !== settings.conversationId) return;
      restoredId = id;
      renderRestored(all);
    }, function () {
      /* no history now (refused token, network): the page works as before */
    });
  }

  function renderRestored(views) {
    var before = els.transcript.querySelector(":scope > .turn"); // the first turn asked here, if any
    var idle = turn === null || turn.finished;
    var pending = [];
    views.forEach(function (view) {
      if (!view || typeof view !== "object" || typeof view.turnId !== "string") return;
      if ((view.requestId && askedHere[view.requestId]) || (turn !== null && turn.turnId === view.turnId)) return;
      var t = new Turn(String(view.prompt || ""), before);
      t.restored = true;
      t.turnId = view.turnId;
      if (typeof view.requestId === "string") t.requestId = view.requestId;
      t.view.root.setAttribute("data-turn-id", t.turnId);
      t.sent = true;
      t.text = typeof view.answer === "string" ? view.answer : "";
      t.lastSeq = typeof view.seq === "number" ? view.seq : 0; // a resume continues after it
      if (view.status === "done") {
        finish(t, { stats: view.stats || null });
      } else if (view.status === "error") {
        var error = view.error && typeof view.error === "object" ? view.error : { code: "internal", message: "" };
        // When it could be asked again then is no news now.
        finish(t, { error: { code: error.code, message: error.message, retryable: error.retryable } });
      } else {
        renderAnswer(t);
        pending.push(t);
      }
    });
    // The page follows one turn at a time: the newest unfinished one, resumed over the WebSocket
    // (fromSeq: its seq, so only what the answer so far lacks comes). Any other says where it is.
    var resumed = idle && pending.length ? pending[pending.length - 1] : null;
    pending.forEach(function (t) {
      if (t !== resumed) setTurnStatus(t, "Still in progress on the server; reload the page to follow it");
    });
    if (resumed) {
      turn = resumed;
      setTurnStatus(resumed, "Restored; resuming…");
      updateButtons();
      if (isOpen()) flushTurn();
      else connect();
    }
    if (els.transcript.querySelector(":scope > .turn")) els.empty.hidden = true;
  }

  // Empty the transcript for another conversation (new, or one chosen in History).
  function clearTranscript() {
    turn = null;
    askedHere = {};
    restoreGeneration += 1; // a restore still under way was for the previous conversation
    Array.prototype.slice.call(els.transcript.querySelectorAll(":scope > .turn")).forEach(function (node) {
      node.remove();
    });
    els.empty.hidden = false;
    updateButtons();
  }

  function useConversation(id) {
    settings.conversationId = id;
    save("sessionStorage", "conversationId", id);
    els.conversationId.textContent = id.slice(0, 8);
    Array.prototype.forEach.call(els.historyList.querySelectorAll("button"), function (button) {
      if (button.getAttribute("data-conversation-id") === id) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    });
  }

  function openConversation(id) {
    if (turn !== null && !turn.finished) return; // its button is disabled meanwhile
    useConversation(id);
    clearTranscript();
    restoredId = null;
    restoreConversation();
    els.history.open = false;
    els.prompt.focus();
  }

  function dateOf(ms) {
    var date = new Date(Number(ms) || 0);
    try {
      return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    } catch (e) {
      return date.toLocaleString();
    }
  }

  function addHistoryItem(conversation) {
    if (!conversation || typeof conversation.conversationId !== "string") return;
    var id = conversation.conversationId;
    if (historyList.ids[id]) return; // moved between two pages (asked in meanwhile)
    historyList.ids[id] = true;
    var title = String(conversation.title || "").trim() || "(untitled)";
    var when = dateOf(conversation.updatedAt);
    var count = Number(conversation.turns) || 0;
    var item = el("li", "history-item");
    var button = el("button", "secondary history-open");
    button.type = "button";
    button.setAttribute("data-conversation-id", id);
    button.setAttribute("aria-label", title + ", " + when + (count ? ", " + count + (count === 1 ? " question" : " questions") : ""));
    if (id === settings.conversationId) button.setAttribute("aria-current", "true");
    button.disabled = turn !== null && !turn.finished;
    button.appendChild(el("span", "history-title", title));
    var time = el("time", "history-date", when);
    if (Number(conversation.updatedAt)) time.dateTime = new Date(Number(conversation.updatedAt)).toISOString();
    button.appendChild(time);
    button.addEventListener("click", function () {
      openConversation(id);
    });
    item.appendChild(button);
    els.historyList.appendChild(item);
  }

  // The first page of past conversations (fresh) or the next one ("More").
  function loadHistory(fresh) {
    if (!historyAvailable()) return;
    if (!fresh && (historyList.loading || !historyList.cursor)) return;
    if (fresh) {
      historyList.generation += 1;
      historyList.cursor = null;
      historyList.ids = {};
      els.historyList.replaceChildren();
      els.historyMore.hidden = true;
    }
    var generation = historyList.generation;
    historyList.loading = true;
    els.historyList.setAttribute("aria-busy", "true");
    els.historyMore.disabled = true;
    els.historyStatus.textContent = "Loading…";
    restGet(pagedPath("/v1/conversations", HISTORY_PAGE, historyList.cursor)).then(function (body) {
      if (generation !== historyList.generation) return;
      historyList.loading = false;
      els.historyList.setAttribute("aria-busy", "false");
      (body && Array.isArray(body.conversations) ? body.conversations : []).forEach(addHistoryItem);
      historyList.cursor = body && typeof body.cursor === "string" && body.cursor ? body.cursor : null;
      els.historyMore.hidden = !historyList.cursor;
      els.historyMore.disabled = false;
      els.historyStatus.textContent = els.historyList.children.length ? "" : "No past conversations yet.";
    }, function () {
      if (generation !== historyList.generation) return;
      historyList.loading = false;
      els.historyList.setAttribute("aria-busy", "false");
      els.historyMore.disabled = false;
      els.historyStatus.textContent = "The history cannot be read right now.";
    });
  }

  // The page has a token (pasted, from #token=, or signed in) or lost it: history follows.
  function tokenChanged() {
    historyList.generation += 1;
    historyList.cursor = null;
    historyList.loading = false;
    historyList.ids = {};
    els.historyList.replaceChildren();
    els.historyList.removeAttribute("aria-busy");
    els.historyMore.hidden = true;
    els.historyStatus.textContent = "";
    els.history.hidden = !historyAvailable();
    if (els.history.hidden) {
      els.history.open = false;
      return;
    }
    if (els.history.open) loadHistory(true);
    if (restoredId !== settings.conversationId) restoreConversation();
  }

  // ---- signing in ---------------------------------------------------------------------------

  function start(config) {
    auth.config = config;
    auth.ready = true;
    if (config.wsUrl && !urlFromHash) {
      settings.url = config.wsUrl; // the stage's own address, as the deploy wrote it
      els.url.value = settings.url;
    }
    if (!config.signIn) {
      // No sign-in configured (the local development tokens): a pasted token, as before.
      if (settings.token) {
        connect();
        tokenChanged(); // the conversation's turns so far, and History
      } else if (ws === null) {
        setStatus("idle", "Enter a token to connect");
        els.settings.open = true;
      }
      return;
    }
    settings.token = ""; // never a pasted or stored token here
    save("sessionStorage", "token", null);
    els.token.value = "";
    els.tokenField.hidden = true;
    els.tokenHint.hidden = true;
    els.signinHint.hidden = false;
    var returning = window.AgentSignIn.complete(config);
    showSignedOut();
    if (returning === null) return;
    setStatus("connecting", "Signing in…");
    returning.then(function (tokens) {
      useTokens(tokens, true);
    }, function (error) {
      showSignedOut();
      showNotice("Could not sign in: " + error.message + ".", "connection", "Sign in", beginSignIn);
    });
  }

  function beginSignIn() {
    if (!auth.config.signIn) return;
    els.signIn.disabled = true;
    setStatus("connecting", "Going to the sign-in page…");
    window.AgentSignIn.begin(auth.config).catch(function (error) {
      els.signIn.disabled = false;
      showSignedOut();
      showNotice("Could not start signing in: " + error.message, "connection");
    });
  }

  function useTokens(tokens, reconnect) {
    // A new access token (first sign-in or a refresh): use it for the next connection, and open
    // one with it now (a turn in flight is resumed on it).
    var first = auth.access === null;
    auth.renewedAt = Date.now();
    auth.access = tokens.access_token;
    if (tokens.refresh_token) auth.refresh = tokens.refresh_token;
    var claims = window.AgentSignIn.claims(tokens.access_token);
    auth.user = String(claims.username || claims["cognito:username"] || claims.sub || "");
    settings.token = auth.access;
    everOpened = first ? false : everOpened;
    scheduleRefresh(Number(tokens.expires_in) || 3600);
    showSignedIn();
    if (first) tokenChanged(); // signed in: the conversation's turns so far, and History
    if (first || (reconnect && ws === null)) {
      if (first) attempt = 0;
      connect();
    } else if (ws !== null || retryTimer !== null) {
      reconnectNow();
    } // else idle: the next question connects with the new token
  }

  function scheduleRefresh(expiresIn) {
    clearTimeout(auth.refreshTimer);
    var delay = Math.max(expiresIn - REFRESH_MARGIN_S, expiresIn / 2) * 1000;
    auth.refreshTimer = setTimeout(refreshSession, delay);
  }

  function refreshSession(reconnect) {
    clearTimeout(auth.refreshTimer);
    auth.refreshTimer = null;
    var token = auth.refresh;
    if (!token) return;
    window.AgentSignIn.refresh(auth.config, token).then(function (tokens) {
      if (auth.refresh !== token) return; // signed out meanwhile
      auth.refreshes += 1;
      useTokens(tokens, reconnect === true);
    }, function (error) {
      if (auth.refresh !== token) return;
      if (!error.refused) {
        auth.refreshTimer = setTimeout(function () { refreshSession(reconnect); }, 15000); // the network: soon again
        return;
      }
      endSession();
      showNotice("Your sign-in ended (" + error.message + "); sign in again.", "connection", "Sign in", beginSignIn);
    });
  }

  function endSession() {
    // Forget every token: memory is the only place they were.
    clearTimeout(auth.refreshTimer);
    auth.refreshTimer = null;
    auth.access = null;
    auth.refresh = null;
    auth.user = "";
    settings.token = "";
    disconnect();
    showSignedOut();
    tokenChanged(); // no token, no history
  }

  function signOut() {
    var token = auth.refresh;
    endSession();
    setStatus("signed-out", "Signing out…");
    window.AgentSignIn.signOut(auth.config, token);
  }

  function showSignedOut() {
    setStatus("signed-out", "Not signed in");
    els.signIn.hidden = false;
    els.signIn.disabled = false;
    els.signOut.hidden = true;
    els.user.hidden = true;
    els.user.textContent = "";
  }

  function showSignedIn() {
    els.signIn.hidden = true;
    els.signOut.hidden = false;
    els.user.hidden = !auth.user;
    els.user.textContent = auth.user;
    hideNotice("connection");
  }

  // ---- wiring --------------------------------------------------------------------------------

  els.url.value = settings.url;
  els.token.value = settings.token;
  els.trace.checked = settings.trace;
  els.conversationId.textContent = settings.conversationId.slice(0, 8);
  document.body.classList.toggle("show-traces", settings.trace);

  function useNewSettings() {
    els.url.value = settings.url;
    els.token.value = auth.config.signIn ? "" : settings.token;
    everOpened = false;
    attempt = 0;
    hideNotice();
    if (ws !== null) {
      var socket = ws;
      ws = null;
      socket.close(1000, "new settings");
    }
    connect();
    tokenChanged(); // perhaps another user, or another stack
  }

  els.settingsForm.addEventListener("submit", function (e) {
    e.preventDefault();
    settings.url = els.url.value.trim();
    save("localStorage", "url", settings.url);
    if (!auth.config.signIn) {
      settings.token = els.token.value.trim();
      save("sessionStorage", "token", settings.token);
    }
    useNewSettings();
  });

  // A link with a new #token=... opened in this tab applies it at once.
  window.addEventListener("hashchange", function () {
    if (readHash() && !auth.config.signIn) useNewSettings();
  });

  els.disconnect.addEventListener("click", disconnect);

  els.trace.addEventListener("change", function () {
    settings.trace = els.trace.checked;
    save("localStorage", "trace", String(settings.trace));
    document.body.classList.toggle("show-traces", settings.trace);
  });

  els.newConversation.addEventListener("click", function () {
    if (turn !== null && !turn.finished) return;
    useConversation(newId());
    clearTranscript();
    restoredId = settings.conversationId; // new: nothing to read back
    els.prompt.focus();
  });

  // History: read when opened (it changes as you ask), a page at a time.
  els.history.addEventListener("toggle", function () {
    if (els.history.open) loadHistory(true);
  });
  els.historyMore.addEventListener("click", function () {
    loadHistory(false);
  });

  // Documents: the list is asked for when the panel opens (and on each connection while it is).
  els.documents.open = docs.panelOpen;
  els.documents.addEventListener("toggle", function () {
    docs.panelOpen = els.documents.open;
    save("localStorage", "documentsOpen", String(docs.panelOpen));
    if (!docs.panelOpen) return;
    if (isOpen()) requestDocuments();
    else if (auth.ready) connect();
  });
  els.upload.addEventListener("click", function () {
    els.uploadFile.click();
  });
  els.uploadFile.addEventListener("change", function () {
    var files = Array.prototype.slice.call(els.uploadFile.files || []);
    els.uploadFile.value = ""; // the same file again is a new upload
    uploadFiles(files);
  });

  els.composer.addEventListener("submit", function (e) {
    e.preventDefault();
    var prompt = els.prompt.value;
    if (!prompt.trim() || (turn !== null && !turn.finished)) return;
    if (!VISIBLE.test(prompt)) {
      showNotice("The question has only invisible characters (such as zero-width spaces); type a question.", "error");
      return;
    }
    if (codePoints(prompt) > MAX_PROMPT_CHARS) {
      showNotice("The question is " + codePoints(prompt) + " characters long; the limit is " + MAX_PROMPT_CHARS + ".", "error");
      return;
    }
    els.prompt.value = "";
    ask(prompt);
  });

  els.prompt.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      els.composer.requestSubmit();
    }
  });

  els.cancel.addEventListener("click", cancel);
  els.noticeClose.addEventListener("click", function () {
    els.notice.hidden = true;
  });
  els.noticeAction.addEventListener("click", function () {
    els.notice.hidden = true;
    if (noticeHandler) noticeHandler();
  });

  window.setInterval(function () {
    if (turn !== null && !turn.finished) send({ action: "ping" });
  }, KEEPALIVE_MS);

  // Reconnect at once when the network comes back instead of waiting out the backoff.
  window.addEventListener("online", function () {
    if (retryTimer !== null) connect();
  });

  // For people debugging in the console (and for the browser tests): read-only facts.
  window.agentstream = {
    connected: isOpen,
    conversationId: function () {
      return settings.conversationId;
    },
    // Whether the page can read history, and the conversation whose turns it read back last.
    history: function () {
      return { available: historyAvailable(), restored: restoredId };
    },
    turn: function () {
      return turn && { turnId: turn.turnId, text: turn.text, finished: turn.finished, resumes: turn.resumes, lastSeq: turn.lastSeq,
        progress: turn.progress, restored: turn.restored };
    },
    // The Documents panel's rows, newest first: where each document stands here.
    documents: function () {
      return Array.prototype.map.call(els.documentsList.children, function (node) {
        return { documentId: node.getAttribute("data-document-id"), state: node.getAttribute("data-state"),
          fileName: node.querySelector(".document-name").textContent, text: node.querySelector(".document-state").textContent };
      });
    },
    // Whether sign-in is configured and where it stands; never the tokens themselves.
    signIn: function () {
      return { configured: Boolean(auth.config.signIn), ready: auth.ready, signedIn: auth.access !== null,
        user: auth.user, refreshes: auth.refreshes };
    },
  };

  updateButtons();
  els.prompt.focus();
  els.signIn.addEventListener("click", beginSignIn);
  els.signOut.addEventListener("click", signOut);
  window.AgentSignIn.loadConfig().then(start);
})();
