// The room page: polls messages with its own cursor, heartbeats presence,
// and says plainly which instance answered and whether the login survived.
// Under an ASGI server it takes messages and presence over a WebSocket
// instead, closing gaps by `prev` and resuming from its last id after a
// reconnect (with backoff); it falls back to polling when the socket never
// connects. The status bar says which.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("room-config").textContent);
  const csrfToken = document.getElementById("csrf").value;
  const api = `/api/rooms/${encodeURIComponent(config.room)}`;
  const POLL_MS = 1000;

  const list = document.getElementById("messages");
  const newBelow = document.getElementById("new-below");
  const compose = document.getElementById("compose");
  const sendButton = compose.querySelector("button[type=submit]");
  const textBox = document.getElementById("text");
  const composeError = document.getElementById("compose-error");
  const online = document.getElementById("online");
  const onlineSource = document.getElementById("online-source");
  const notice = document.getElementById("notice");
  const servedBy = document.getElementById("served-by");
  const loginState = document.getElementById("login-state");
  const transport = document.getElementById("transport");

  const shown = new Set();
  let cursor = null;
  let loggedOut = false;
  let unreachable = false;
  let sending = false;
  // The unsent message and the client_id it keeps until acknowledged, so a
  // second press of Enter retries it instead of making a second copy.
  let pending = null;

  class LoggedOut extends Error {}

  function uuid4() {
    // crypto.randomUUID needs a secure context; getRandomValues does not.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function showNotice(text, kind) {
    notice.textContent = "";
    notice.className = `notice ${kind || ""}`;
    notice.append(text);
    notice.hidden = false;
  }

  function markUnreachable() {
    if (unreachable || loggedOut) return;
    unreachable = true;
    showNotice("The site is unreachable: no instance answered. Retrying every second; nothing you typed is lost.");
  }

  async function call(method, url, body) {
    let response;
    try {
      response = await fetch(url, {
        method,
        credentials: "same-origin",
        redirect: "manual",
        headers: {
          Accept: "application/json",
          ...(body ? { "Content-Type": "application/json" } : {}),
          ...(method !== "GET" ? { "X-CSRFToken": csrfToken } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      markUnreachable();
      throw err;
    }
    const instance = response.headers.get("X-Served-By");
    if (!instance && response.status >= 502) {
      // The load balancer answered, but no instance of the site did.
      markUnreachable();
      const err = new Error(`HTTP ${response.status} from the load balancer`);
      err.status = response.status;
      throw err;
    }
    servedBy.textContent = instance || servedBy.textContent;
    if (unreachable) {
      unreachable = false;
      if (!loggedOut) {
        showNotice("The server is back.");
        setTimeout(() => { if (!unreachable && !loggedOut) notice.hidden = true; }, 3000);
      }
    }
    if (response.status === 401) {
      sessionLost(instance);
      throw new LoggedOut();
    }
    const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      const err = new Error(data.error || `HTTP ${response.status}`);
      err.status = response.status;
      throw err;
    }
    return { status: response.status, data };
  }

  function sessionLost(instance) {
    if (loggedOut) return;
    loggedOut = true;
    loginState.textContent = "not logged in";
    const nav = document.querySelector(".top nav");
    const login = document.createElement("a");
    login.href = config.loginUrl;
    login.textContent = "Log in";
    nav.replaceChildren(login);
    const unsent = textBox.value.trim();
    const link = document.createElement("a");
    link.href = config.loginUrl;
    link.textContent = "Log in again";
    showNotice(
      `You are no longer logged in: ${instance || "the instance that answered"} does not know your session` +
        ` (it was kept in a store this instance cannot see, or that store lost it). ` +
        (unsent ? "Your unsent message is still in the box; copy it before you leave. " : ""),
      "gone"
    );
    notice.append(link);
    link.focus();
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function render(message) {
    if (shown.has(message.id)) return;
    shown.add(message.id);
    const item = document.createElement("li");
    if (message.author === config.username) item.className = "mine";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.author;
    const time = document.createElement("time");
    time.dateTime = message.created_at;
    time.className = "hint";
    time.textContent = new Date(message.created_at).toLocaleTimeString();
    item.append(author, document.createTextNode(message.text + " "), time);
    list.append(item);
  }

  function showMessages(messages) {
    if (!messages.length) return;
    const stick = nearBottom();
    messages.forEach(render);
    if (stick) list.scrollTop = list.scrollHeight;
    else newBelow.hidden = false;
  }

  async function poll() {
    const query = cursor === null ? "" : `?after=${cursor}`;
    const { data } = await call("GET", `${api}/messages${query}`);
    if (data.cursor !== null) cursor = data.cursor;
    showMessages(data.messages);
  }

  // Presence: the client keeps the room's online set and its version, and
  // asks only for the changes since.
  let presenceVersion = null;
  const onlineNow = new Set();

  function applyPresence(data) {
    if (data.online) {
      onlineNow.clear();
      data.online.forEach((name) => onlineNow.add(name));
    } else {
      for (const [op, name] of data.changes) {
        if (op === "+") onlineNow.add(name);
        else onlineNow.delete(name);
      }
    }
    presenceVersion = data.version;
  }

  function showOnline(data) {
    applyPresence(data);
    online.textContent = "";
    for (const name of [...onlineNow].sort()) {
      const item = document.createElement("li");
      item.textContent = name === config.username ? `${name} (you)` : name;
      online.append(item);
    }
    onlineSource.textContent =
      data.store === "memory"
        ? `As seen by ${data.instance} alone: presence lives in its memory.`
        : `Shared ${data.store} presence, read by ${data.instance}.`;
  }

  async function heartbeat() {
    const since = presenceVersion === null ? "" : `?since=${presenceVersion}`;
    const { data } = await call("POST", `${api}/presence${since}`, {});
    showOnline(data);
  }

  async function send(event) {
    event.preventDefault();
    const text = textBox.value;
    if (!text.trim() || loggedOut || sending) return;
    if (!pending || pending.text !== text) pending = { text, client_id: uuid4() };
    sending = true;
    sendButton.disabled = true;
    composeError.hidden = true;
    try {
      await deliver(pending);
    } finally {
      sending = false;
      sendButton.disabled = false;
    }
  }

  async function deliver(message) {
    if (live && live.readyState === WebSocket.OPEN) {
      live.send(JSON.stringify({ type: "post", ...message }));
      return;  // the ack clears the box (onFrame); a lost socket resends it on reconnecting
    }
    // Retrying with the same client_id is safe: the server keeps one copy.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const { data } = await call("POST", `${api}/messages`, message);
        pending = null;
        if (textBox.value === message.text) textBox.value = "";
        showMessages([data]);
        list.scrollTop = list.scrollHeight;
        return;
      } catch (err) {
        if (err instanceof LoggedOut) return;
        if (err.status && err.status < 500) {
          pending = null;
          composeError.textContent = `Not sent: ${err.message}`;
          composeError.hidden = false;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    composeError.textContent =
      "Not sent yet: the server did not answer. Your message is still in the box; press Send to retry it.";
    composeError.hidden = false;
  }

  function every(ms, task) {
    async function tick() {
      if (loggedOut) return;
      try {
        await task();
      } catch (err) {
        if (err instanceof LoggedOut) return;
      }
      setTimeout(tick, ms);
    }
    tick();
  }

  compose.addEventListener("submit", send);
  textBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      compose.requestSubmit();
    }
  });
  list.addEventListener("scroll", () => {
    if (nearBottom()) newBelow.hidden = true;
  });
  newBelow.addEventListener("click", () => {
    list.scrollTop = list.scrollHeight;
    newBelow.hidden = true;
  });
  window.addEventListener("pagehide", () => {
    if (loggedOut) return;
    fetch(`${api}/presence`, {
      method: "DELETE",
      keepalive: true,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken },
    });
  });

  // The WebSocket: messages in the order the layer delivers them, each
  // carrying `prev`, the id of the room's message before it. A message whose
  // prev is not the last id held is a gap: reconnect with ?after=<that id>.
  let live = null;
  let lastId = 0;
  let failures = 0;
  let everOpened = false;
  let resuming = false;  // this page closed the socket for a gap: reconnect at once
  let holder = null;  // the instance holding the socket (its hello frame)

  function polling(why) {
    cursor = lastId || cursor;
    transport.textContent = `polling over HTTP${why ? ` (${why})` : ""}`;
    every(POLL_MS, poll);
    every(config.heartbeatInterval * 1000, heartbeat);
  }

  function onFrame(frame) {
    if (frame.type === "message") {
      if ((frame.prev ?? 0) === lastId) {
        lastId = frame.id;
        showMessages([frame]);
      } else if (frame.id > lastId) {
        resuming = true;
        live.close(4000, "gap");  // resumes from lastId in onclose
      }
    } else if (frame.type === "hello") {
      holder = frame.instance;
      transport.textContent = `live over a WebSocket on ${holder}`;
    } else if (frame.type === "presence") {
      showOnline({ online: frame.online, version: null, store: "socket", instance: holder || "the socket's instance" });
      onlineSource.textContent = "Open sockets in this room.";
    } else if (frame.type === "ack") {
      if (pending && pending.client_id === frame.client_id) {
        if (textBox.value === pending.text) textBox.value = "";
        pending = null;
      }
    } else if (frame.type === "error") {
      pending = null;
      composeError.textContent = `Not sent: ${frame.error}`;
      composeError.hidden = false;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const path = `/ws/rooms/${encodeURIComponent(config.room)}/?after=${lastId}`;
    const socket = new WebSocket(`${scheme}//${location.host}${path}`);
    let opened = false;
    socket.onopen = () => {
      opened = true;
      everOpened = true;
      failures = 0;
      live = socket;
      transport.textContent = "live over a WebSocket";
      if (pending) deliver(pending);
    };
    socket.onmessage = (event) => onFrame(JSON.parse(event.data));
    socket.onclose = (event) => {
      live = null;
      holder = null;
      if (loggedOut) return;
      if (!everOpened) {
        polling("the WebSocket did not connect");
        return;
      }
      failures += opened ? 0 : 1;
      const wait = resuming ? 0 : Math.min(10_000, 500 * 2 ** failures);
      transport.textContent = resuming ? "resuming the WebSocket" :
        `WebSocket closed (${event.code}); reconnecting in ${wait / 1000} s`;
      resuming = false;
      setTimeout(connect, wait);
    };
  }

  async function start() {
    // The latest messages over HTTP, then the socket from there.
    try {
      await poll();
    } catch (err) {
      if (err instanceof LoggedOut) return;
    }
    lastId = cursor || 0;
    connect();
  }

  if (config.socket) start();
  else polling("");
})();
