// The React page (/demo, and `tokenbench browser --page react`): one answer rendered through
// useTokenStream, the transport a parameter (?client=). The product's front end, in small.
import { createRoot } from "react-dom/client";
import { useEffect, useState } from "react";
import { createStream } from "./clients.js";
import { Recorder, params } from "./recorder.js";
import { useTokenStream } from "./useTokenStream.js";

const p = params();
const rec = new Recorder(p.client, p.tab);
window.tb = rec;

function Answer({ client, url }) {
  const { text, tokens, status, detail, stop } = useTokenStream(client, url, rec, p.opts);
  return (
    <section>
      <p className="status" data-status={status}>
        {client} · {status} · {tokens} tokens{detail ? ` · ${detail}` : ""}
      </p>
      <button type="button" className="stop" onClick={stop} disabled={status !== "streaming"}>
        Stop
      </button>
      <article className="answer">{text}<span className="caret">{status === "streaming" ? "▍" : ""}</span></article>
    </section>
  );
}

function App() {
  const [url, setUrl] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    createStream(p.client, location.origin, p.tokens, p.rate)
      .then((u) => {
        rec.created(u);
        setUrl(u);
      })
      .catch((err) => {
        rec.failed(err);
        setError(String(err.message || err));
      });
  }, []);
  return (
    <main>
      <h1>tokenbench</h1>
      <p className="prompt">An answer streamed {p.tokens} tokens at {p.rate} tokens/s over {p.client}.</p>
      {error ? <p className="error">{error}</p> : <Answer client={p.client} url={url} />}
    </main>
  );
}

createRoot(document.getElementById("root")).render(<App />);
