// tokenbench's browser clients: one per way a browser reads a token stream (docs/browsers.md).
//
// Rules of this module:
// - A client knows its wire and nothing of pages: read(url, after, sink) -> {close()}. `url` is
//   the stream's URL, `${origin}/v1/streams/${id}`; the sink gets token(tok) with
//   tok = {seq, t, text} (t: due time, ns since the epoch, as a Number), event(kind, detail) for
//   "open", "error", "retry", "watchdog", "end" and "gave-up", and nothing after end or gave-up.
// - "As it comes" means the platform's own behaviour and nothing added: EventSource reconnects
//   by itself (WHATWG HTML 9.2.3) and gives up for good on a non-200 answer. Every other client
//   resumes itself after the last seq it saw (docs/protocol.md, "Reading a stream").
// - gRPC-Web is @connectrpc/connect-web's client, over fetch, binary format.
// - The handle's stop() is the stop button (docs/protocol.md, "Stop"): a POST of its own, in-band
//   on a WebSocket, StopStream over gRPC-Web. Reading goes on to the end, whose event's detail
//   is "stopped" when the user stopped the answer.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { TokenStream } from "../gen/tokens_pb.js";

const RETRY_MS = [250, 500, 1000, 2000];
const MAX_TRIES = 30;

function backoff(tries) {
  return RETRY_MS[Math.min(tries, RETRY_MS.length - 1)];
}

function parse(data) {
  const o = JSON.parse(data);
  return { seq: o.seq, t: o.t, text: o.text };
}

function origin(url) {
  return url.slice(0, url.indexOf("/v1/streams/"));
}

function streamId(url) {
  return url.slice(url.indexOf("/v1/streams/") + 12);
}

// The stop button over HTTP: POST /v1/streams/{id}/stop, a request of its own.
async function postStop(url) {
  const r = await fetch(`${url}/stop`, { method: "POST", cache: "no-store" });
  if (r.status !== 202) throw new Error(`stop: HTTP ${r.status}`);
}

// "stopped" when the end message says the user stopped the answer, else null.
function endDetail(data) {
  try {
    return JSON.parse(data).stopped ? "stopped" : null;
  } catch {
    return null;
  }
}

// SSE, as it comes: the browser's EventSource, its own reconnects with Last-Event-ID.
function eventsource(url, after, sink) {
  const es = new EventSource(`${url}/sse${after >= 0 ? `?last_event_id=${after}` : ""}`);
  es.onopen = () => sink.event("open");
  es.onmessage = (e) => sink.token(parse(e.data));
  es.addEventListener("end", (e) => {
    es.close();
    sink.event("end", endDetail(e.data));
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) sink.event("gave-up", "EventSource closed");
    else sink.event("retry", "EventSource reconnecting");
  };
  return { close: () => es.close(), stop: () => postStop(url) };
}

// SSE, hardened: named `ping` events (?ping=1) feed a silence watchdog; a terminal error or a
// silent connection gets a new EventSource resuming after the last seq.
function eventsourceHardened(url, after, sink, opts = {}) {
  const silenceMs = opts.watchdogMs || 5000;
  let last = after;
  let es = null;
  let timer = null;
  let tries = 0;
  let done = false;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => restart("watchdog", "silent connection"), silenceMs);
  };
  const restart = (kind, why) => {
    if (done) return;
    es.close();
    clearTimeout(timer);
    if (++tries > MAX_TRIES) {
      done = true;
      sink.event("gave-up", why);
      return;
    }
    sink.event(kind, why);
    setTimeout(() => {
      sink.event("retry");
      open();
    }, backoff(tries - 1));
  };
  const open = () => {
    if (done) return;
    const cursor = last >= 0 ? `&last_event_id=${last}` : "";
    es = new EventSource(`${url}/sse?ping=1${cursor}`);
    arm();
    es.onopen = () => {
      sink.event("open");
      arm();
    };
    es.onmessage = (e) => {
      const tok = parse(e.data);
      last = Math.max(last, tok.seq);
      tries = 0;
      arm();
      sink.token(tok);
    };
    es.addEventListener("ping", arm);
    es.addEventListener("end", (e) => {
      done = true;
      clearTimeout(timer);
      es.close();
      sink.event("end", endDetail(e.data));
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) restart("error", "EventSource closed");
      else sink.event("retry", "EventSource reconnecting");
    };
  };
  open();
  return {
    close: () => {
      done = true;
      clearTimeout(timer);
      if (es) es.close();
    },
    stop: () => postStop(url),
  };
}

// A resume loop for the clients that do not resume by themselves: `attempt(after)` reads until
// the end or a failure, and returns "end", or throws; a thrown {final: true} gives up at once.
function resumeLoop(after, sink, attempt) {
  const state = { last: after, closed: false, current: null, stopped: false };
  const run = async () => {
    let tries = 0;
    while (!state.closed) {
      const seen = state.last;
      try {
        if ((await attempt(state)) === "end") {
          sink.event("end", state.stopped ? "stopped" : null);
          return;
        }
        throw new Error("closed before the end");
      } catch (err) {
        if (state.closed) return;
        if (state.last > seen) tries = 0; // it read something: a new outage, not the same one
        if (err && err.final) {
          sink.event("gave-up", String(err.message || err));
          return;
        }
        if (++tries > MAX_TRIES) {
          sink.event("gave-up", String(err.message || err));
          return;
        }
        sink.event("error", String(err.message || err));
        await new Promise((r) => setTimeout(r, backoff(tries - 1)));
        sink.event("retry");
      }
    }
  };
  const take = (tok) => {
    if (tok.seq > state.last) state.last = tok.seq;
    sink.token(tok);
  };
  state.take = take;
  run();
  return state;
}

// WebSocket: the browser's WebSocket, resuming with ?after= (RFC 6455 has no resume).
function websocket(url, after, sink) {
  const wsUrl = url.replace(/^http/, "ws");
  const state = resumeLoop(after, sink, (st) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsUrl}/ws${st.last >= 0 ? `?after=${st.last}` : ""}`);
    st.current = ws;
    let ended = false;
    ws.onopen = () => sink.event("open");
    ws.onmessage = (e) => {
      const o = JSON.parse(e.data);
      if (o.end) {
        ended = true;
        st.stopped = Boolean(o.stopped);
      } else st.take({ seq: o.seq, t: o.t, text: o.text });
    };
    ws.onclose = (e) => (ended ? resolve("end") : reject(new Error(`close ${e.code}`)));
  }));
  return {
    close: () => {
      state.closed = true;
      if (state.current) state.current.close();
    },
    // in-band on the open connection; between connections, the POST as the others
    stop: async () => {
      const ws = state.current;
      if (ws && ws.readyState === WebSocket.OPEN) ws.send('{"stop":true}');
      else await postStop(url);
    },
  };
}

const transports = new Map();

function grpcClient(base) {
  if (!transports.has(base)) {
    const transport = createGrpcWebTransport({ baseUrl: base, useBinaryFormat: true });
    transports.set(base, createClient(TokenStream, transport));
  }
  return transports.get(base);
}

// gRPC-Web server streaming (@connectrpc/connect-web), resuming with StreamRequest.after.
function grpcWeb(url, after, sink) {
  const client = grpcClient(origin(url));
  const id = streamId(url);
  const state = resumeLoop(after, sink, async (st) => {
    const abort = new AbortController();
    st.current = abort;
    const request = st.last >= 0 ? { id, after: BigInt(st.last) } : { id };
    const onTrailer = (t) => {
      st.stopped = t.has("tokenbench-stopped");
    };
    try {
      let first = true;
      for await (const tok of client.streamTokens(request, { signal: abort.signal, onTrailer })) {
        if (first) {
          first = false;
          sink.event("open");
        }
        st.take({ seq: Number(tok.seq), t: Number(tok.t), text: tok.text });
      }
      return "end";
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) {
        throw Object.assign(new Error(err.message), { final: true });
      }
      throw err;
    }
  });
  return {
    close: () => {
      state.closed = true;
      if (state.current) state.current.abort();
    },
    stop: async () => {
      await client.stopStream({ id });
    },
  };
}

// Long polling: fetch in a loop, each poll after the last seq seen.
function fetchPoll(url, after, sink, opts = {}) {
  const wait = opts.pollTimeoutS ?? 25;
  const state = resumeLoop(after, sink, async (st) => {
    for (;;) {
      const abort = new AbortController();
      st.current = abort;
      const r = await fetch(`${url}/poll?after=${st.last}&timeout=${wait}`, {
        signal: abort.signal,
        cache: "no-store",
      });
      if (r.status === 404 || r.status === 410 || r.status === 422) {
        throw Object.assign(new Error(`HTTP ${r.status}`), { final: true });
      }
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      const body = await r.json();
      for (const o of body.tokens) st.take({ seq: o.seq, t: o.t, text: o.text });
      if (body.end) {
        st.stopped = Boolean(body.stopped);
        return "end";
      }
    }
  });
  return {
    close: () => {
      state.closed = true;
      if (state.current) state.current.abort();
    },
    stop: () => postStop(url),
  };
}

export const CLIENTS = {
  eventsource,
  "eventsource-hardened": eventsourceHardened,
  websocket,
  "grpc-web": grpcWeb,
  fetch: fetchPoll,
};

// The prompt POST: JSON over HTTP, CreateStream over gRPC-Web. Returns the stream's URL.
export async function createStream(client, base, tokens, rate) {
  if (client === "grpc-web") {
    const created = await grpcClient(base).createStream({ prompt: "browser", tokens: BigInt(tokens), rate });
    return `${base}/v1/streams/${created.id}`;
  }
  const r = await fetch(`${base}/v1/streams`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: "browser", tokens, rate }),
  });
  if (r.status !== 201) throw new Error(`create: HTTP ${r.status}`);
  return `${base}/v1/streams/${(await r.json()).id}`;
}

export function read(client, url, after, sink, opts) {
  const fn = CLIENTS[client];
  if (!fn) throw new Error(`unknown client ${client}: one of ${Object.keys(CLIENTS).join(", ")}`);
  return fn(url, after, sink, opts);
}
