// The plain page `tokenbench browser` opens in each tab: create a stream, read it with one
// client, record everything (recorder.js). No framework: what the transport itself costs.
import { createStream, read } from "./clients.js";
import { Recorder, params } from "./recorder.js";

const p = params();
const rec = new Recorder(p.client, p.tab);
window.tb = rec;
const out = document.getElementById("text");
const status = document.getElementById("status");

const sink = {
  token(tok) {
    rec.token(tok);
    out.append(tok.text); // a text node per token, as a chat page appends
    status.textContent = `${p.client}: ${rec.result.seqs.length} tokens`;
  },
  event(kind, detail) {
    rec.event(kind, detail);
    status.textContent = `${p.client}: ${kind} after ${rec.result.seqs.length} tokens`;
  },
};

createStream(p.client, location.origin, p.tokens, p.rate)
  .then((url) => {
    rec.created(url);
    read(p.client, url, -1, sink, p.opts);
  })
  .catch((err) => rec.failed(err));
