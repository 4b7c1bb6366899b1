// useTokenStream(transport, url): a React hook that reads one answer with a browser client
// (clients.js) and re-renders as tokens come. `transport` is a client name ("eventsource",
// "eventsource-hardened", "websocket", "grpc-web", "fetch"); `url` is the stream's URL
// (`${origin}/v1/streams/${id}`), or null while the prompt POST is in flight. `observe`, if
// given, sees every token and event too (the benchmark's recorder). It returns the answer so
// far and stop(), the stop button (docs/protocol.md, "Stop"): the answer then ends where the
// model was, with status "stopped".
import { useCallback, useEffect, useRef, useState } from "react";
import { read } from "./clients.js";

export function useTokenStream(transport, url, observe = null, opts = undefined) {
  const [answer, setAnswer] = useState({ text: "", tokens: 0, status: "waiting", detail: null });
  const reading = useRef(null);
  useEffect(() => {
    if (!url) return undefined;
    setAnswer({ text: "", tokens: 0, status: "connecting", detail: null });
    const reader = read(transport, url, -1, {
      token(tok) {
        if (observe) observe.token(tok);
        setAnswer((a) => ({ ...a, text: a.text + tok.text, tokens: a.tokens + 1, status: "streaming" }));
      },
      event(kind, detail) {
        if (observe) observe.event(kind, detail);
        let status = { end: "done", "gave-up": "gave up", open: "streaming" }[kind] || "reconnecting";
        if (kind === "end" && detail === "stopped") status = "stopped";
        setAnswer((a) => ({ ...a, status, detail: detail ?? null }));
      },
    }, opts);
    reading.current = reader;
    return () => {
      reading.current = null;
      reader.close();
    };
  }, [transport, url]);
  const stop = useCallback(async () => {
    if (!reading.current) return;
    if (observe && observe.pressed) observe.pressed();
    setAnswer((a) => ({ ...a, status: "stopping" }));
    try {
      await reading.current.stop();
    } catch (err) {
      // still stopping (the answer did not end meanwhile): the stop failed, Stop again
      setAnswer((a) => (a.status === "stopping"
        ? { ...a, status: "streaming", detail: String(err.message || err) } : a));
    }
  }, []);
  return { ...answer, stop };
}
