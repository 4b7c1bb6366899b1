// What a page measured, for `tokenbench browser` (bench/browser/): read as window.tb.
//
// Every token is timed against its due time `t` (docs/protocol.md): now is
// performance.timeOrigin + performance.now(), in ms since the epoch, so a token that waited,
// for a socket or for a reconnect, shows it (no coordinated omission). Seqs and texts go back
// whole; the harness checks them against the stream (bench/browser/results.py).
// Times (`*_ms`) count from the tab's navigation start (performance.timeOrigin), so a page that
// itself waited for a connection shows that wait in first_token_ms.
export class Recorder {
  constructor(client, tab) {
    this.result = {
      client, tab, url: null, state: "starting", time_origin: performance.timeOrigin,
      created_ms: null, first_token_ms: null, last_token_ms: null,
      seqs: [], texts: [], latency_ms: [], events: [], protocol: null, error: null,
      pressed_ms: null, seqs_at_press: null,
    };
  }

  now() {
    return performance.now();
  }

  created(url) {
    this.result.url = url;
    this.result.created_ms = this.now();
    this.result.state = "reading";
  }

  token(tok) {
    const r = this.result;
    const wall = performance.timeOrigin + performance.now();
    if (r.first_token_ms === null) r.first_token_ms = this.now();
    r.last_token_ms = this.now();
    r.seqs.push(tok.seq);
    r.texts.push(tok.text);
    r.latency_ms.push(wall - tok.t / 1e6);
  }

  // The user pressed the stop button (the React page's hook calls this).
  pressed() {
    this.result.pressed_ms = this.now();
    this.result.seqs_at_press = this.result.seqs.length;
  }

  event(kind, detail) {
    const r = this.result;
    r.events.push({ at_ms: Math.round(this.now()), kind, detail: detail ?? null });
    if (kind === "end") r.state = "done";
    if (kind === "gave-up") r.state = "gave-up";
    if (kind === "end" || kind === "gave-up") this.protocolSeen();
  }

  failed(err) {
    this.result.state = "failed";
    this.result.error = String(err && err.message ? err.message : err);
  }

  // The protocol the stream's requests went over (Resource Timing's nextHopProtocol).
  protocolSeen() {
    const id = this.result.url ? this.result.url.split("/").pop() : null;
    const ours = (e) => (id && e.name.includes(id)) || e.name.endsWith("/StreamTokens");
    const hits = performance.getEntriesByType("resource").filter(ours);
    this.result.protocol = hits.length ? hits[hits.length - 1].nextHopProtocol || null : null;
  }

  snapshot() {
    if (this.result.protocol === null) this.protocolSeen();
    return this.result;
  }
}

// The page's parameters: ?client=&tokens=&rate=&tab=&watchdog_ms=&poll_timeout_s=
export function params() {
  const q = new URLSearchParams(location.search);
  return {
    client: q.get("client") || "eventsource",
    tokens: Number(q.get("tokens") || 200),
    rate: Number(q.get("rate") || 40),
    tab: Number(q.get("tab") || 0),
    opts: {
      watchdogMs: Number(q.get("watchdog_ms") || 5000),
      pollTimeoutS: Number(q.get("poll_timeout_s") || 25),
    },
  };
}
