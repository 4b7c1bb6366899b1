/* The load generator's compiled receive path: bytes -> tokens -> accounting, with no Python
 * frame per token (tokenbench issue 4: at most 10 us of load-generator CPU per token).
 *
 * Rules:
 * - It only speeds up what clients/ already does in Python, and must give the same answers:
 *   tests/test_fastpath.py feeds both paths the same bytes, split at every position.
 * - A Tap is one conversation's reader. It becomes the asyncio protocol of each connection
 *   (uvloop then calls data_received in C). It parses the response head only far enough to
 *   find its end and hands the head to Python (on_head), which decides: go on fast, or take the
 *   connection back. After the head it decodes HTTP/1.1 chunked bodies carrying
 *   text/event-stream (WHATWG HTML 9.2.6), or RFC 6455 frames. With a Pump (clients/_pump.c)
 *   the socket's reads skip uvloop too: epoll, recv and this parser, all in C.
 * - gRPC (mode "grpc"): Python (clients/h2grpc.py, on the h2 library) opens the HTTP/2
 *   connection and the call; once the response headers are in, the Tap reads RFC 9113 frames.
 *   DATA frames of its stream carry length-prefixed messages (gRPC PROTOCOL-HTTP2.md), each a
 *   protobuf Token (proto/tokens.proto); every other frame goes whole to h2 in Python (on_other),
 *   and flow-control credit goes back in batches (conn.credit). When Python ends the call
 *   (tap.stream = 0), the bytes after it go back to the connection.
 * - Long polling (mode "poll"): the Tap reads the whole keep-alive connection, answers with a
 *   Content-Length whose body is {"tokens":[...],"end":false} go no further than here, and it
 *   writes the next poll itself (set_poll's prefix, the cursor, the suffix). The first answer,
 *   any other status, the end and anything odd go to Python (on_other) whole, which may ask for
 *   the next poll (tap.poll()); an answer without Content-Length hands the connection back.
 * - Only the common case is handled here: a message event / final unmasked text frame whose
 *   JSON is a flat object with integer seq and t and a string text, and whose seq is the next
 *   one. Anything else (other events, control frames, odd JSON, a gap or a duplicate) goes to
 *   the Python callbacks, in order, so behaviour stays defined in one place.
 * - Accounting (latency against the due time t, gap, time to first token, text check) goes
 *   into a Tally shared by the process; histogram layout as bench/load/hist.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- histogram (bench/load/hist.py) ---- */
#define SUB_BITS 6
#define LINEAR 128
#define MAX_VALUE ((((int64_t)1) << 40) - 1)
#define HSIZE ((40 - SUB_BITS) * 64 + LINEAR)

typedef struct {
    int64_t counts[HSIZE];
    int64_t count, total, min, max;
} Hist;

/* The bucket of a value: bench/load/hist.py's index_of, pinned to it by tests/test_hist.py. */
static inline int64_t hist_index(int64_t v) {
    if (v < LINEAR) return v > 0 ? v : 0;
    if (v > MAX_VALUE) v = MAX_VALUE;
    int bits = 64 - __builtin_clzll((unsigned long long)v);
    int shift = bits - SUB_BITS - 1;
    return ((int64_t)shift << SUB_BITS) + (v >> shift);
}

static inline void hist_record(Hist *h, int64_t v) {
    if (v > MAX_VALUE) v = MAX_VALUE;
    h->counts[hist_index(v)]++;
    if (h->count == 0 || v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->count++;
    h->total += v;
}

static PyObject *hist_take(Hist *h) {
    PyObject *buckets = PyList_New(0);
    if (!buckets) return NULL;
    for (int i = 0; i < HSIZE; i++) {
        if (!h->counts[i]) continue;
        PyObject *pair = Py_BuildValue("(iL)", i, (long long)h->counts[i]);
        if (!pair || PyList_Append(buckets, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(buckets);
            return NULL;
        }
        Py_DECREF(pair);
    }
    PyObject *out = Py_BuildValue("(LLLLN)", (long long)h->count, (long long)h->min,
                                  (long long)h->max, (long long)h->total, buckets);
    memset(h, 0, sizeof(*h));
    return out;
}

static inline int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Added to every wall-clock reading: the load process's offset to the server's clock
   (bench/load/clock.py), so latencies count on the clock that stamped each token's t. */
static int64_t clock_correction_ns = 0;

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + clock_correction_ns;
}

static inline double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- token texts (servers/tokens/texts.py) ---- */
static PyObject *pools[3]; /* tuples of bytes: plain, multi-byte, newline */

static inline uint64_t mix(uint64_t seed, uint64_t seq) {
    uint64_t z = seed + (seq + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static PyObject *expected(uint64_t seed, int64_t seq) {
    if (!pools[0] || seq < 0) return NULL;
    int r = (int)(seq % 20);
    PyObject *pool = (r == 3 || r == 8 || r == 13 || r == 18) ? pools[1]
                     : (r == 11)                                ? pools[2]
                                                                : pools[0];
    Py_ssize_t n = PyTuple_GET_SIZE(pool);
    return PyTuple_GET_ITEM(pool, (Py_ssize_t)(mix(seed, (uint64_t)seq) % (uint64_t)n));
}

/* ---- Tally: one per load process ---- */
typedef struct {
    PyObject_HEAD
    Hist latency, gap, ttft;
    int64_t tokens, wrong;
} Tally;

static PyObject *tally_take(Tally *self, PyObject *unused) {
    PyObject *l = hist_take(&self->latency), *g = hist_take(&self->gap),
             *t = hist_take(&self->ttft);
    if (!l || !g || !t) {
        Py_XDECREF(l); Py_XDECREF(g); Py_XDECREF(t);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(LLNNN)", (long long)self->tokens, (long long)self->wrong,
                                  l, g, t);
    self->tokens = self->wrong = 0;
    return out;
}

static PyMethodDef tally_methods[] = {
    {"take", (PyCFunction)tally_take, METH_NOARGS,
     "(tokens, wrong, latency, gap, ttft) since the last take; each histogram as "
     "(count, min, max, sum, [(index, count)])."},
    {NULL}};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clients._fastpath.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = tally_methods,
    .tp_doc = "Per-process token accounting: three histograms (us) and two counters.",
};

/* ---- a growable byte buffer ---- */
typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int buf_add(Buf *b, const char *src, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *p = PyMem_Realloc(b->p, cap);
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static void buf_drop(Buf *b, Py_ssize_t n) { /* remove the first n bytes */
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* ---- the flat token JSON: {"seq":N,"t":N,"text":"..."} in any key order ---- */
typedef struct {
    int64_t seq, t;
    char text[256];
    Py_ssize_t text_len;
} Tok;

static inline const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

/* A JSON string at p (after the quote); decoded into out (if given). Returns the position after
 * the closing quote, or NULL for anything the fast path leaves to Python. */
static const char *jstring(const char *p, const char *e, char *out, Py_ssize_t cap,
                           Py_ssize_t *len) {
    Py_ssize_t n = 0;
    while (p < e) {
        unsigned char c = (unsigned char)*p++;
        if (c == '"') {
            if (len) *len = n;
            return p;
        }
        if (c < 0x20) return NULL; /* json.loads(strict=True) refuses control characters */
        if (c != '\\') {
            if (out) {
                if (n >= cap) return NULL;
                out[n] = (char)c;
            }
            n++;
            continue;
        }
        if (p >= e) return NULL;
        char x = *p++, ch;
        switch (x) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (e - p < 4 || hex4(p, &u) < 0) return NULL;
            p += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return NULL; /* a lone surrogate: Python's business */
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                return NULL;
            }
            char tmp[4];
            int k;
            if (u < 0x80) tmp[0] = (char)u, k = 1;
            else if (u < 0x800) tmp[0] = (char)(0xC0 | (u >> 6)), tmp[1] = (char)(0x80 | (u & 0x3F)), k = 2;
            else if (u < 0x10000)
                tmp[0] = (char)(0xE0 | (u >> 12)), tmp[1] = (char)(0x80 | ((u >> 6) & 0x3F)),
                tmp[2] = (char)(0x80 | (u & 0x3F)), k = 3;
            else
                tmp[0] = (char)(0xF0 | (u >> 18)), tmp[1] = (char)(0x80 | ((u >> 12) & 0x3F)),
                tmp[2] = (char)(0x80 | ((u >> 6) & 0x3F)), tmp[3] = (char)(0x80 | (u & 0x3F)), k = 4;
            if (out) {
                if (n + k > cap) return NULL;
                memcpy(out + n, tmp, k);
            }
            n += k;
            continue;
        }
        default: return NULL;
        }
        if (out) {
            if (n >= cap) return NULL;
            out[n] = ch;
        }
        n++;
    }
    return NULL;
}

static const char *jint(const char *p, const char *e, int64_t *v) {
    int neg = 0, digits = 0;
    uint64_t x = 0;
    if (p < e && *p == '-') neg = 1, p++;
    if (p < e && *p == '0' && p + 1 < e && p[1] >= '0' && p[1] <= '9') return NULL;
    while (p < e && *p >= '0' && *p <= '9') {
        if (++digits > 19) return NULL; /* beyond int64: Python's */
        x = x * 10 + (uint64_t)(*p++ - '0');
    }
    if (!digits || x > (uint64_t)INT64_MAX || (p < e && (*p == '.' || *p == 'e' || *p == 'E')))
        return NULL;
    *v = neg ? -(int64_t)x : (int64_t)x;
    return p;
}

/* 1: a token; 0: not the fast case (Python decides). */
static int parse_token(const char *p, const char *e, Tok *tok) {
    int have = 0;
    p = ws(p, e);
    if (p >= e || *p++ != '{') return 0;
    for (;;) {
        p = ws(p, e);
        if (p >= e || *p++ != '"') return 0;
        const char *key = p;
        while (p < e && *p != '"' && *p != '\\') p++;
        if (p >= e || *p != '"') return 0;
        Py_ssize_t klen = p - key;
        p = ws(p + 1, e);
        if (p >= e || *p++ != ':') return 0;
        p = ws(p, e);
        if (p >= e) return 0;
        if (klen == 3 && !memcmp(key, "seq", 3)) {
            if (!(p = jint(p, e, &tok->seq))) return 0;
            have |= 1;
        } else if (klen == 1 && key[0] == 't') {
            if (!(p = jint(p, e, &tok->t))) return 0;
            have |= 2;
        } else if (klen == 4 && !memcmp(key, "text", 4)) {
            if (*p++ != '"') return 0;
            if (!(p = jstring(p, e, tok->text, sizeof(tok->text), &tok->text_len))) return 0;
            have |= 4;
        } else if (*p == '"') {
            if (!(p = jstring(p + 1, e, NULL, 0, NULL))) return 0;
        } else {
            return 0; /* numbers, literals, nesting: rare, and Python's to judge */
        }
        p = ws(p, e);
        if (p >= e) return 0;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}') return 0;
        break;
    }
    return ws(p, e) == e && have == 7;
}

/* ---- Tap: one conversation's reader ---- */
enum { MODE_SSE = 0, MODE_WS = 1, MODE_GRPC = 2, MODE_POLL = 3 };
enum { C_SIZE, C_DATA, C_DATA_END, C_TRAILER, C_DONE };

typedef struct {
    PyObject_HEAD
    Tally *tally;
    PyObject *conn, *on_head, *on_other, *on_error, *slow;
    int mode, check, fast, head_done, skip_lf, bom_done;
    uint64_t seed;
    int64_t t_post_ns, prev_rx_ns, cursor, delivered, bytes, retry;
    double last_rx;
    int cstate;
    int64_t cleft;
    Buf raw;   /* bytes not yet framed: head, chunk-size lines, partial WS frames */
    Buf sse;   /* de-chunked event-stream text not yet split into lines */
    Buf data;  /* the event's data buffer */
    Buf type;  /* the event's type */
    Buf idbuf; /* the last event ID buffer */
    Buf msg;   /* grpc: DATA payload not yet split into messages */
    int64_t stream;    /* grpc: the HTTP/2 stream read here (0: none, hand everything back) */
    int64_t unacked;   /* grpc: DATA bytes consumed and not yet credited (RFC 9113 6.9) */
    int64_t credit_at; /* grpc: conn.credit(unacked) once it reaches this */
    PyObject *prefix, *suffix, *write; /* poll: the request around the cursor; transport.write */
    PyObject *stats;                   /* poll: the reader's ReaderStats (requests, live) */
    int64_t answers;                  /* poll: answers read (the first goes to Python) */
    PyObject *pump;      /* the process's Pump (clients/_pump.c), or NULL: uvloop reads */
    PyObject *transport; /* while pumped: the uvloop transport, its reading paused */
    int pfd;             /* while pumped: the socket's fd in the pump, else -1 */
} Tap;

/* The accounting of one delivered token (Reader.deliver already said it is the next one). */
static void account(Tap *s, int64_t seq, int64_t t, const char *text, Py_ssize_t n) {
    int64_t now = now_ns();
    Tally *a = s->tally;
    hist_record(&a->latency, floordiv(now - t, 1000));
    if (s->prev_rx_ns) hist_record(&a->gap, floordiv(now - s->prev_rx_ns, 1000));
    else hist_record(&a->ttft, floordiv(now - s->t_post_ns, 1000));
    s->prev_rx_ns = now;
    a->tokens++;
    if (s->check) {
        PyObject *want = expected(s->seed, seq);
        if (!want || PyBytes_GET_SIZE(want) != n || memcmp(PyBytes_AS_STRING(want), text, n))
            a->wrong++;
    }
}

static int call_slow(Tap *s, Tok *tok) { /* an irregular seq: Reader.deliver in Python */
    PyObject *text = PyUnicode_DecodeUTF8(tok->text, tok->text_len, "replace");
    if (!text) return -1;
    PyObject *r = PyObject_CallFunction(s->slow, "LLN", (long long)tok->seq, (long long)tok->t,
                                        text);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static int deliver(Tap *s, Tok *tok) {
    if (tok->seq != s->cursor + 1) return call_slow(s, tok);
    s->cursor = tok->seq;
    s->delivered++;
    account(s, tok->seq, tok->t, tok->text, tok->text_len);
    return 0;
}

static int token(Tap *s, const char *p, const char *e, int *fast) {
    Tok tok;
    *fast = parse_token(p, e, &tok);
    return *fast ? deliver(s, &tok) : 0;
}

static int error(Tap *s, const char *why) {
    PyObject *r = PyObject_CallFunction(s->on_error, "s", why);
    Py_XDECREF(r);
    return r ? 1 : -1; /* 1: stop reading this connection */
}

/* WHATWG dispatch: an empty line. */
static int sse_dispatch(Tap *s) {
    PyObject *r;
    s->bom_done = 1;
    if (!s->data.len) {
        s->type.len = 0;
        return 0;
    }
    s->data.len--; /* the trailing LF */
    int is_message = s->type.len == 0 || (s->type.len == 7 && !memcmp(s->type.p, "message", 7));
    int fast = 0;
    if (is_message && token(s, s->data.p, s->data.p + s->data.len, &fast) < 0) return -1;
    if (!fast) {
        r = PyObject_CallFunction(s->on_other, "s#s#s#", is_message ? "message" : s->type.p,
                                  is_message ? (Py_ssize_t)7 : s->type.len, s->data.p,
                                  s->data.len, s->idbuf.p ? s->idbuf.p : "", s->idbuf.len);
        if (!r) {
            /* on_event raised (a malformed event) after aborting: as SSEReader's feed does,
               the exception is swallowed and the connection is gone. */
            if (!PyErr_ExceptionMatches(PyExc_ValueError) &&
                !PyErr_ExceptionMatches(PyExc_KeyError) && !PyErr_ExceptionMatches(PyExc_TypeError))
                return -1;
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    s->data.len = s->type.len = 0;
    return 0;
}

static int sse_line(Tap *s, const char *p, Py_ssize_t n) {
    if (n == 0) return sse_dispatch(s);
    if (p[0] == ':') return 0;
    const char *colon = memchr(p, ':', n);
    Py_ssize_t nlen = colon ? colon - p : n;
    const char *v = colon ? colon + 1 : p + n;
    Py_ssize_t vlen = p + n - v;
    if (vlen && v[0] == ' ') v++, vlen--;
    if (nlen == 4 && !memcmp(p, "data", 4)) {
        if (buf_add(&s->data, v, vlen) < 0 || buf_add(&s->data, "\n", 1) < 0) return -1;
    } else if (nlen == 2 && !memcmp(p, "id", 2)) {
        if (!memchr(v, 0, vlen)) {
            s->idbuf.len = 0;
            if (buf_add(&s->idbuf, v, vlen) < 0) return -1;
        }
    } else if (nlen == 5 && !memcmp(p, "event", 5)) {
        s->type.len = 0;
        if (buf_add(&s->type, v, vlen) < 0) return -1;
    } else if (nlen == 5 && !memcmp(p, "retry", 5) && vlen > 0) {
        int64_t x = 0;
        for (Py_ssize_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9') return 0;
            if (x < 1000000000000LL) x = x * 10 + (v[i] - '0');
        }
        s->retry = x;
    }
    return 0;
}

static int sse_feed(Tap *s, const char *src, Py_ssize_t n) {
    if (n == 0) return 0;
    if (s->skip_lf) {
        s->skip_lf = 0;
        if (src[0] == '\n') src++, n--;
    }
    if (buf_add(&s->sse, src, n) < 0) return -1;
    if (!s->bom_done) {
        if (s->sse.len < 3 && !memcmp(s->sse.p, "\xEF\xBB\xBF", s->sse.len)) return 0;
        if (s->sse.len >= 3 && !memcmp(s->sse.p, "\xEF\xBB\xBF", 3)) buf_drop(&s->sse, 3);
        s->bom_done = 1;
    }
    Py_ssize_t start = 0, i = 0, len = s->sse.len;
    char *b = s->sse.p;
    while (i < len) {
        char c = b[i];
        if (c != '\n' && c != '\r') {
            i++;
            continue;
        }
        if (sse_line(s, b + start, i - start) < 0) return -1;
        b = s->sse.p; /* callbacks never touch sse; re-read anyway, it is one load */
        if (c == '\r') {
            if (i + 1 < len) {
                if (b[i + 1] == '\n') i++;
            } else {
                s->skip_lf = 1;
            }
        }
        start = ++i;
    }
    buf_drop(&s->sse, start);
    return 0;
}

/* HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1) around the event stream. */
static int chunked(Tap *s) {
    Buf *r = &s->raw;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (pos < r->len && s->cstate != C_DONE) {
        if (s->cstate == C_DATA) {
            Py_ssize_t n = r->len - pos < s->cleft ? r->len - pos : (Py_ssize_t)s->cleft;
            if ((rc = sse_feed(s, r->p + pos, n)) < 0) break;
            pos += n;
            if (!(s->cleft -= n)) s->cstate = C_DATA_END;
            continue;
        }
        char *nl = memchr(r->p + pos, '\n', r->len - pos);
        if (!nl) {
            if (r->len - pos > 1024) rc = error(s, "bad chunked encoding: long line");
            break;
        }
        Py_ssize_t n = nl - (r->p + pos);
        const char *line = r->p + pos;
        if (n && line[n - 1] == '\r') n--;
        pos = nl - r->p + 1;
        if (s->cstate == C_DATA_END) {
            if (n) {
                rc = error(s, "bad chunked encoding: no CRLF after data");
                break;
            }
            s->cstate = C_SIZE;
        } else if (s->cstate == C_SIZE) {
            int64_t size = 0;
            Py_ssize_t k = 0;
            for (; k < n && k < 15; k++) {
                char c = line[k];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0) break;
                size = size * 16 + d;
            }
            if (k == 0 || (k < n && line[k] != ';' && line[k] != ' ' && line[k] != '\t')) {
                rc = error(s, "bad chunked encoding: chunk size");
                break;
            }
            s->cleft = size;
            s->cstate = size ? C_DATA : C_TRAILER;
        } else if (s->cstate == C_TRAILER && n == 0) {
            s->cstate = C_DONE; /* the response is complete */
            PyObject *res = PyObject_CallMethod(s->conn, "on_message_complete", NULL);
            if (!res) rc = -1;
            Py_XDECREF(res);
        }
    }
    buf_drop(r, pos);
    return rc;
}

/* RFC 6455 section 5.2 frames from the server. */
static int frames(Tap *s) {
    Buf *r = &s->raw;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (r->len - pos >= 2) {
        const unsigned char *h = (const unsigned char *)r->p + pos;
        Py_ssize_t avail = r->len - pos, head = 2;
        uint64_t n = h[1] & 0x7F;
        if (n == 126) {
            if (avail < 4) break;
            n = ((uint64_t)h[2] << 8) | h[3], head = 4;
        } else if (n == 127) {
            if (avail < 10) break;
            n = 0;
            for (int i = 2; i < 10; i++) n = (n << 8) | h[i];
            head = 10;
            if (n > ((uint64_t)1 << 40)) {
                rc = error(s, "frame too large");
                break;
            }
        }
        if ((uint64_t)(avail - head) < n) break;
        if (h[1] & 0x80) {
            rc = error(s, "masked frame from server");
            pos = r->len;
            break;
        }
        const char *payload = (const char *)h + head;
        pos += head + (Py_ssize_t)n;
        int fast = 0;
        if (h[0] == 0x81 && (rc = token(s, payload, payload + n, &fast)) < 0) break;
        if (!fast) {
            PyObject *res = PyObject_CallFunction(s->on_other, "iy#", h[0], payload, (Py_ssize_t)n);
            if (!res) {
                rc = -1;
                break;
            }
            Py_DECREF(res);
        }
    }
    buf_drop(r, pos);
    return rc;
}

/* ---- gRPC: RFC 9113 frames, length-prefixed messages, protobuf Token ---- */

/* Well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF), which
 * protobuf requires of a proto3 string field. */
static int utf8_ok(const unsigned char *p, Py_ssize_t n) {
    const unsigned char *e = p + n;
    while (p < e) {
        unsigned c = *p++;
        if (c < 0x80) continue;
        int k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (e - p < k || p[0] < lo || p[0] > hi) return 0;
        for (int i = 1; i < k; i++)
            if ((p[i] & 0xC0) != 0x80) return 0;
        p += k;
    }
    return 1;
}

static int varint(const unsigned char **pp, const unsigned char *e, uint64_t *v) {
    uint64_t x = 0;
    const unsigned char *p = *pp;
    for (int shift = 0; p < e && shift < 70; shift += 7) {
        unsigned char b = *p++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *pp = p, *v = x;
            return 1;
        }
    }
    return 0;
}

/* 1: a Token {seq = 1, t = 2, text = 3} (proto3: an absent field is zero; the last of a
 * repeated one wins); 0: anything odd (a wrong wire type, a long or invalid text), for Python. */
static int parse_pb_token(const char *start, const char *end, Tok *tok) {
    const unsigned char *p = (const unsigned char *)start, *e = (const unsigned char *)end;
    tok->seq = tok->t = 0, tok->text_len = 0;
    while (p < e) {
        uint64_t key, v;
        if (!varint(&p, e, &key) || key >> 3 == 0 || key > 0xFFFFFFFF) return 0;
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if ((field == 1 || field == 2) && wt != 0) return 0;
        if (field == 3 && wt != 2) return 0;
        switch (wt) {
        case 0:
            if (!varint(&p, e, &v)) return 0;
            if (field == 1) tok->seq = (int64_t)v;
            else if (field == 2) tok->t = (int64_t)v;
            break;
        case 1: if (e - p < 8) return 0; p += 8; break;
        case 5: if (e - p < 4) return 0; p += 4; break;
        case 2:
            if (!varint(&p, e, &v) || v > (uint64_t)(e - p)) return 0;
            if (field == 3) {
                if (v > sizeof(tok->text) || !utf8_ok(p, (Py_ssize_t)v)) return 0;
                memcpy(tok->text, p, v);
                tok->text_len = (Py_ssize_t)v;
            }
            p += v;
            break;
        default: return 0;
        }
    }
    return 1;
}

#define GRPC_MAX_MESSAGE (4 << 20) /* grpcio's default max_receive_message_length */

/* Length-prefixed messages (PROTOCOL-HTTP2.md): a compressed flag, a 4-byte length, the
 * message. One not read here (compressed, or not a plain Token) goes to on_message in Python. */
static int grpc_messages(Tap *s, const char *p, Py_ssize_t n, Py_ssize_t *used) {
    const char *start = p, *e = p + n;
    while (e - p >= 5) {
        const unsigned char *h = (const unsigned char *)p;
        uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
        if (len > GRPC_MAX_MESSAGE) {
            *used = e - start;
            return error(s, "RESOURCE_EXHAUSTED: message larger than 4 MiB");
        }
        if ((uint32_t)(e - p - 5) < len) break;
        Tok tok;
        if (h[0] == 0 && parse_pb_token(p + 5, p + 5 + len, &tok)) {
            if (deliver(s, &tok) < 0) return -1;
        } else {
            PyObject *r = PyObject_CallFunction(s->on_head, "iy#", h[0], p + 5, (Py_ssize_t)len);
            if (!r) return -1;
            Py_DECREF(r);
        }
        p += 5 + len;
        if (!s->stream) break; /* on_message ended the call */
    }
    *used = p - start;
    return 0;
}

static int grpc_data(Tap *s, const char *p, Py_ssize_t n) {
    Py_ssize_t used = 0;
    int rc;
    if (s->msg.len == 0) { /* the common case: whole messages, parsed in place */
        rc = grpc_messages(s, p, n, &used);
        if (rc == 0 && used < n && s->stream) rc = buf_add(&s->msg, p + used, n - used);
        return rc;
    }
    if (buf_add(&s->msg, p, n) < 0) return -1;
    rc = grpc_messages(s, s->msg.p, s->msg.len, &used);
    buf_drop(&s->msg, used);
    return rc;
}

/* RFC 9113 section 4.1 frames. */
static int h2_frames(Tap *s) {
    Buf *r = &s->raw;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (rc == 0 && s->stream && r->len - pos >= 9) {
        const unsigned char *h = (const unsigned char *)r->p + pos;
        uint32_t n = ((uint32_t)h[0] << 16) | ((uint32_t)h[1] << 8) | h[2];
        if ((uint32_t)(r->len - pos - 9) < n) break;
        uint32_t sid = ((uint32_t)(h[5] & 0x7F) << 24) | ((uint32_t)h[6] << 16) |
                       ((uint32_t)h[7] << 8) | h[8];
        /* PADDED: a length byte and that much padding; more than the frame is h2's to refuse */
        int pad = (h[4] & 0x08) ? (n ? h[9] + 1 : -1) : 0;
        pos += 9 + n;
        if (h[3] == 0 && sid == s->stream && pad >= 0 && (uint32_t)pad <= n) {
            s->unacked += n; /* flow control counts the padding too (RFC 9113 6.9.1) */
            const char *payload = (const char *)h + 9 + (pad ? 1 : 0);
            rc = grpc_data(s, payload, (Py_ssize_t)(n - pad));
            if (rc == 0 && (h[4] & 0x01)) { /* END_STREAM on DATA: h2 must see the stream end */
                unsigned char end[9] = {0, 0, 0, 0, 0x01, h[5] & 0x7F, h[6], h[7], h[8]};
                PyObject *x = PyObject_CallFunction(s->on_other, "y#", end, (Py_ssize_t)9);
                rc = x ? 0 : -1;
                Py_XDECREF(x);
            }
            if (rc == 0 && s->unacked >= s->credit_at) {
                PyObject *x = PyObject_CallMethod(s->conn, "credit", "L", (long long)s->unacked);
                s->unacked = 0;
                rc = x ? 0 : -1;
                Py_XDECREF(x);
            }
            continue;
        }
        PyObject *x = PyObject_CallFunction(s->on_other, "y#", h, (Py_ssize_t)(9 + n));
        rc = x ? 0 : -1;
        Py_XDECREF(x);
    }
    if (rc < 0) return -1;
    buf_drop(r, pos);
    if (!s->stream && s->fast && s->conn) { /* the call is over: the connection is Python's */
        s->fast = 0;
        s->bytes -= r->len;
        if (r->len) {
            PyObject *rest = PyBytes_FromStringAndSize(r->p, r->len);
            r->len = 0;
            PyObject *x = rest ? PyObject_CallMethod(s->conn, "data_received", "N", rest) : NULL;
            if (!x) return -1;
            Py_DECREF(x);
        }
    }
    return rc;
}

/* ---- long polling: HTTP/1.1 answers with Content-Length, {"tokens":[...],"end":bool} ---- */

static const char *find_crlfcrlf(const char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return p + i + 1;
    return NULL;
}

static int name_is(const char *p, Py_ssize_t n, const char *want) {
    Py_ssize_t k = (Py_ssize_t)strlen(want);
    if (n != k) return 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != want[i]) return 0;
    }
    return 1;
}

/* The head's status, Content-Length (-1: none, or anything that is not plain) and whether
 * the answer is the connection's last (Connection: close). */
static int poll_head(const char *p, const char *e, int *status, int64_t *clen, int *close) {
    *status = 0, *clen = -1, *close = 0;
    if (e - p < 12 || memcmp(p, "HTTP/1.", 7)) return 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        *status = *status * 10 + (p[i] - '0');
    }
    const char *line = memchr(p, '\n', e - p);
    int chunked = 0;
    while (line && ++line < e) {
        const char *nl = memchr(line, '\n', e - line);
        if (!nl) break;
        const char *end = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon = memchr(line, ':', end - line);
        if (colon) {
            const char *v = colon + 1;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if (name_is(line, colon - line, "content-length")) {
                int64_t x = 0;
                if (ve == v || ve - v > 12 || *clen != -1) return 0; /* a second one: odd */
                for (const char *q = v; q < ve; q++) {
                    if (*q < '0' || *q > '9') return 0;
                    x = x * 10 + (*q - '0');
                }
                *clen = x;
            } else if (name_is(line, colon - line, "transfer-encoding")) {
                chunked = 1;
            } else if (name_is(line, colon - line, "connection") && ve - v == 5 &&
                       name_is(v, 5, "close")) {
                *close = 1;
            }
        }
        line = nl;
    }
    if (chunked) *clen = -1;
    return 1;
}

/* One flat token object in an array: the position after its closing brace, or NULL. */
static const char *poll_object(const char *p, const char *e, Tok *tok) {
    const char *start = p, *q = p + 1;
    if (p >= e || *p != '{') return NULL;
    while (q < e && *q != '}') {
        if (*q == '"') {
            if (!(q = jstring(q + 1, e, NULL, 0, NULL))) return NULL;
            continue;
        }
        if (*q == '{' || *q == '[') return NULL;
        q++;
    }
    if (q >= e || !parse_token(start, q + 1, tok)) return NULL;
    return q + 1;
}

/* pass 0 checks the whole answer, pass 1 delivers: nothing is delivered from an answer Python
 * will read again. 1: read here (*end says whether it ended the stream); 0: Python's. */
static int poll_body(Tap *s, const char *p, const char *e, int deliver_pass, int *end) {
    static const char head[] = "\"tokens\"";
    Tok tok;
    p = ws(p, e);
    if (p >= e || *p++ != '{') return 0;
    p = ws(p, e);
    if (e - p < 8 || memcmp(p, head, 8)) return 0;
    p = ws(p + 8, e);
    if (p >= e || *p++ != ':') return 0;
    p = ws(p, e);
    if (p >= e || *p++ != '[') return 0;
    p = ws(p, e);
    if (p < e && *p == ']') {
        p++;
    } else {
        for (;;) {
            if (!(p = poll_object(ws(p, e), e, &tok))) return 0;
            if (deliver_pass && deliver(s, &tok) < 0) return -1;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p >= e || *p++ != ']') return 0;
            break;
        }
    }
    p = ws(p, e);
    if (e - p < 6 || memcmp(p, ",", 1)) return 0;
    p = ws(p + 1, e);
    if (e - p < 5 || memcmp(p, "\"end\"", 5)) return 0;
    p = ws(p + 5, e);
    if (p >= e || *p++ != ':') return 0;
    p = ws(p, e);
    if (e - p >= 4 && !memcmp(p, "true", 4)) *end = 1, p += 4;
    else if (e - p >= 5 && !memcmp(p, "false", 5)) *end = 0, p += 5;
    else return 0;
    p = ws(p, e);
    if (p >= e || *p++ != '}') return 0;
    return ws(p, e) == e;
}

static PyObject *one; /* the int 1 */

static int poll_send(Tap *s) {
    if (!s->prefix || !s->write) {
        PyErr_SetString(PyExc_RuntimeError, "poll tap without set_poll");
        return -1;
    }
    char num[24];
    int k = snprintf(num, sizeof num, "%lld", (long long)s->cursor);
    Py_ssize_t a = PyBytes_GET_SIZE(s->prefix), b = PyBytes_GET_SIZE(s->suffix);
    PyObject *req = PyBytes_FromStringAndSize(NULL, a + k + b);
    if (!req) return -1;
    char *out = PyBytes_AS_STRING(req);
    memcpy(out, PyBytes_AS_STRING(s->prefix), a);
    memcpy(out + a, num, k);
    memcpy(out + a + k, PyBytes_AS_STRING(s->suffix), b);
    PyObject *r = PyObject_CallOneArg(s->write, req);
    Py_DECREF(req);
    if (!r) return -1;
    Py_DECREF(r);
    if (s->stats) { /* stats.requests += 1, as the Python path counts each poll */
        PyObject *n = PyObject_GetAttrString(s->stats, "requests"), *m = NULL;
        if (n) m = PyNumber_Add(n, one);
        int rc = m ? PyObject_SetAttrString(s->stats, "requests", m) : -1;
        Py_XDECREF(n);
        Py_XDECREF(m);
        if (rc < 0) return -1;
    }
    return 0;
}

static int poll_answers(Tap *s) {
    Buf *r = &s->raw;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (s->fast && s->conn && pos < r->len) {
        const char *p = r->p + pos, *hend = find_crlfcrlf(p, r->len - pos);
        int status, close, end = 0;
        int64_t clen;
        if (!hend) {
            if (r->len - pos > 65536) rc = error(s, "response head too large");
            break;
        }
        if (!poll_head(p, hend, &status, &clen, &close) || clen < 0) {
            /* not a plain answer (chunked, no length): the connection is Python's from here */
            PyObject *rest = PyBytes_FromStringAndSize(p, r->len - pos);
            s->fast = 0;
            s->bytes -= r->len - pos;
            pos = r->len;
            PyObject *x = rest ? PyObject_CallOneArg(s->on_head, rest) : NULL;
            Py_XDECREF(rest);
            if (!x) rc = -1;
            Py_XDECREF(x);
            break;
        }
        if ((int64_t)(r->p + r->len - hend) < clen) break;
        const char *body = hend, *bend = hend + clen;
        pos = bend - r->p;
        int fast = s->answers++ > 0 && status == 200 && !close &&
                   poll_body(s, body, bend, 0, &end) == 1 && !end;
        if (fast) {
            if ((rc = poll_body(s, body, bend, 1, &end)) < 0) break;
            rc = poll_send(s);
        } else {
            PyObject *x = PyObject_CallFunction(s->on_other, "iy#y#", status, p,
                                                (Py_ssize_t)(hend - p), body, (Py_ssize_t)clen);
            rc = x ? 0 : -1;
            Py_XDECREF(x);
        }
        if (rc < 0) break;
    }
    if (rc < 0) return -1;
    buf_drop(r, pos);
    return rc;
}

static PyObject *tap_data_received(Tap *s, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    s->last_rx = monotonic();
    int rc = 0;
    if (!s->conn) { /* stopped */
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    if (!s->fast) { /* the connection was handed back to Python */
        PyObject *r = PyObject_CallMethod(s->conn, "data_received", "O", data);
        PyBuffer_Release(&view);
        if (!r) return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    s->bytes += view.len;
    rc = buf_add(&s->raw, view.buf, view.len);
    PyBuffer_Release(&view);
    if (rc < 0) return NULL;
    if (!s->head_done) {
        const char *end = NULL;
        for (Py_ssize_t i = 3; i < s->raw.len; i++) {
            if (s->raw.p[i] == '\n' && s->raw.p[i - 1] == '\r' && s->raw.p[i - 2] == '\n' &&
                s->raw.p[i - 3] == '\r') {
                end = s->raw.p + i + 1;
                break;
            }
        }
        if (!end) {
            if (s->raw.len > 65536 && error(s, "response head too large") < 0) return NULL;
            Py_RETURN_NONE;
        }
        Py_ssize_t hlen = end - s->raw.p;
        s->head_done = 1;
        PyObject *r = PyObject_CallFunction(s->on_head, "y#", s->raw.p, hlen);
        if (!r) return NULL;
        int go = PyObject_IsTrue(r);
        Py_DECREF(r);
        buf_drop(&s->raw, hlen);
        if (!go) { /* Python takes over: it gets the rest of the bytes */
            s->fast = 0;
            s->bytes -= s->raw.len; /* counted again by the Python protocol */
            if (s->raw.len) {
                PyObject *rest = PyBytes_FromStringAndSize(s->raw.p, s->raw.len);
                s->raw.len = 0;
                if (!rest) return NULL;
                r = PyObject_CallMethod(s->conn, "data_received", "N", rest);
                if (!r) return NULL;
                Py_DECREF(r);
            }
            Py_RETURN_NONE;
        }
    }
    rc = s->mode == MODE_SSE   ? chunked(s)
         : s->mode == MODE_WS  ? frames(s)
         : s->mode == MODE_GRPC ? h2_frames(s)
                               : poll_answers(s);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

#include "_pump.c"

static PyObject *tap_forward(Tap *s, const char *name, PyObject *args) {
    if (!s->conn) Py_RETURN_NONE; /* stopped: nothing to tell */
    return PyObject_CallMethod(s->conn, name, args ? "O" : NULL, args);
}

static PyObject *tap_connection_lost(Tap *s, PyObject *exc) {
    unpump(s);
    return tap_forward(s, "connection_lost", exc);
}
static PyObject *tap_eof_received(Tap *s, PyObject *u) { return tap_forward(s, "eof_received", NULL); }
static PyObject *tap_pause_writing(Tap *s, PyObject *u) { Py_RETURN_NONE; }
static PyObject *tap_connection_made(Tap *s, PyObject *t) { Py_RETURN_NONE; }

static PyObject *tap_start(Tap *s, PyObject *args) {
    /* A new connection: start(conn, on_head, on_other, on_error) */
    PyObject *conn, *on_head, *on_other, *on_error;
    if (!PyArg_ParseTuple(args, "OOOO", &conn, &on_head, &on_other, &on_error)) return NULL;
    Py_INCREF(conn); Py_INCREF(on_head); Py_INCREF(on_other); Py_INCREF(on_error);
    Py_XSETREF(s->conn, conn);
    Py_XSETREF(s->on_head, on_head);
    Py_XSETREF(s->on_other, on_other);
    Py_XSETREF(s->on_error, on_error);
    s->fast = 1, s->head_done = s->mode >= MODE_GRPC, s->skip_lf = 0, s->bom_done = 0;
    s->cstate = C_SIZE, s->cleft = 0, s->retry = -1, s->bytes = 0, s->stream = s->unacked = 0;
    s->answers = 0;
    s->raw.len = s->sse.len = s->data.len = s->type.len = s->idbuf.len = s->msg.len = 0;
    s->last_rx = monotonic();
    Py_RETURN_NONE;
}

static PyObject *tap_stop(Tap *s, PyObject *u) { /* the connection is over: drop references */
    unpump(s);
    Py_CLEAR(s->conn); Py_CLEAR(s->on_head); Py_CLEAR(s->on_other); Py_CLEAR(s->on_error);
    Py_CLEAR(s->write); Py_CLEAR(s->stats);
    s->raw.len = s->sse.len = s->data.len = s->type.len = s->msg.len = 0;
    s->stream = 0;
    Py_RETURN_NONE;
}

static PyObject *tap_set_poll(Tap *s, PyObject *args) {
    PyObject *prefix, *suffix, *write, *stats = Py_None;
    if (!PyArg_ParseTuple(args, "O!O!O|O", &PyBytes_Type, &prefix, &PyBytes_Type, &suffix, &write,
                          &stats))
        return NULL;
    Py_INCREF(prefix); Py_INCREF(suffix); Py_INCREF(write);
    Py_XSETREF(s->prefix, prefix);
    Py_XSETREF(s->suffix, suffix);
    Py_XSETREF(s->write, write);
    if (stats == Py_None) Py_CLEAR(s->stats);
    else {
        Py_INCREF(stats);
        Py_XSETREF(s->stats, stats);
    }
    Py_RETURN_NONE;
}

static PyObject *tap_poll(Tap *s, PyObject *u) {
    if (poll_send(s) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *tap_release(Tap *s, PyObject *u) {
    /* grpc: stop reading here at once; the bytes not yet framed, for the connection's owner */
    unpump(s);
    PyObject *rest = PyBytes_FromStringAndSize(s->fast ? s->raw.p : "", s->fast ? s->raw.len : 0);
    if (!rest) return NULL;
    if (s->fast) s->bytes -= s->raw.len;
    s->fast = 0, s->stream = 0, s->raw.len = s->msg.len = 0;
    return rest;
}

static PyObject *tap_account(Tap *s, PyObject *args) {
    /* on_token for Reader.deliver's own (irregular or slow-path) deliveries */
    long long seq, t;
    PyObject *text;
    if (!PyArg_ParseTuple(args, "LLU", &seq, &t, &text)) return NULL;
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(text, &n);
    if (!p) {
        PyErr_Clear();
        p = "", n = -1; /* a lone surrogate: never the expected text */
    }
    account(s, seq, t, p, n);
    Py_RETURN_NONE;
}

static int tap_init(Tap *s, PyObject *args, PyObject *kw) {
    static char *names[] = {"tally", "slow", "mode", "seed", "t_post_ns", "cursor", "pump", NULL};
    PyObject *tally, *slow, *seed, *pump = Py_None;
    const char *mode;
    long long t_post = 0, cursor = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OsO|LLO", names, &TallyType, &tally, &slow,
                                     &mode, &seed, &t_post, &cursor, &pump))
        return -1;
    if (pump != Py_None && !PyObject_TypeCheck(pump, &PumpType)) {
        PyErr_SetString(PyExc_TypeError, "pump must be a Pump or None");
        return -1;
    }
    s->pfd = -1;
    if (pump != Py_None) {
        Py_INCREF(pump);
        Py_XSETREF(s->pump, pump);
    }
    if (!strcmp(mode, "sse")) s->mode = MODE_SSE;
    else if (!strcmp(mode, "ws")) s->mode = MODE_WS;
    else if (!strcmp(mode, "grpc")) s->mode = MODE_GRPC;
    else if (!strcmp(mode, "poll")) s->mode = MODE_POLL;
    else {
        PyErr_SetString(PyExc_ValueError, "mode must be 'sse', 'ws', 'grpc' or 'poll'");
        return -1;
    }
    s->check = seed != Py_None;
    if (s->check) {
        s->seed = PyLong_AsUnsignedLongLongMask(seed);
        if (PyErr_Occurred()) return -1;
    }
    Py_INCREF(tally); Py_INCREF(slow);
    Py_XSETREF(s->tally, (Tally *)tally);
    Py_XSETREF(s->slow, slow);
    s->t_post_ns = t_post, s->cursor = cursor, s->retry = -1, s->credit_at = 1 << 20;
    return 0;
}

static int tap_traverse(Tap *s, visitproc visit, void *arg) {
    Py_VISIT(s->tally); Py_VISIT(s->conn); Py_VISIT(s->on_head); Py_VISIT(s->on_other);
    Py_VISIT(s->on_error); Py_VISIT(s->slow); Py_VISIT(s->prefix); Py_VISIT(s->suffix);
    Py_VISIT(s->write); Py_VISIT(s->stats); Py_VISIT(s->pump); Py_VISIT(s->transport);
    return 0;
}

static int tap_clear(Tap *s) {
    Py_CLEAR(s->tally); Py_CLEAR(s->conn); Py_CLEAR(s->on_head); Py_CLEAR(s->on_other);
    Py_CLEAR(s->on_error); Py_CLEAR(s->slow); Py_CLEAR(s->prefix); Py_CLEAR(s->suffix);
    Py_CLEAR(s->write); Py_CLEAR(s->stats); Py_CLEAR(s->pump); Py_CLEAR(s->transport);
    return 0;
}

static void tap_dealloc(Tap *s) {
    PyObject_GC_UnTrack(s);
    tap_clear(s);
    PyMem_Free(s->raw.p), PyMem_Free(s->sse.p), PyMem_Free(s->data.p);
    PyMem_Free(s->type.p), PyMem_Free(s->idbuf.p), PyMem_Free(s->msg.p);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef tap_methods[] = {
    {"data_received", (PyCFunction)tap_data_received, METH_O, NULL},
    {"connection_lost", (PyCFunction)tap_connection_lost, METH_O, NULL},
    {"eof_received", (PyCFunction)tap_eof_received, METH_NOARGS, NULL},
    {"connection_made", (PyCFunction)tap_connection_made, METH_O, NULL},
    {"pause_writing", (PyCFunction)tap_pause_writing, METH_NOARGS, NULL},
    {"resume_writing", (PyCFunction)tap_pause_writing, METH_NOARGS, NULL},
    {"start", (PyCFunction)tap_start, METH_VARARGS,
     "start(conn, on_head, on_other, on_error): a new connection of this reader. In grpc mode "
     "on_head is on_message(flag, message) and on_other gets whole HTTP/2 frames."},
    {"stop", (PyCFunction)tap_stop, METH_NOARGS, "The connection is over."},
    {"set_poll", (PyCFunction)tap_set_poll, METH_VARARGS,
     "poll: set_poll(prefix, suffix, write, stats=None): a poll is prefix + cursor + suffix, "
     "sent by write; each one adds 1 to stats.requests."},
    {"poll", (PyCFunction)tap_poll, METH_NOARGS, "poll: send the next poll (after the cursor)."},
    {"release", (PyCFunction)tap_release, METH_NOARGS,
     "grpc: stop reading at once; returns the bytes not yet framed, for the connection."},
    {"attach", (PyCFunction)tap_attach, METH_O,
     "attach(transport): with a pump, read this connection there (call after set_protocol)."},
    {"account", (PyCFunction)tap_account, METH_VARARGS,
     "account(seq, t, text): the accounting of one token delivered by Reader.deliver."},
    {NULL}};

#include <structmember.h>
static PyMemberDef tap_members[] = {
    {"cursor", T_LONGLONG, offsetof(Tap, cursor), 0, "the last seq delivered"},
    {"delivered", T_LONGLONG, offsetof(Tap, delivered), 0, "tokens delivered on the fast path"},
    {"bytes_received", T_LONGLONG, offsetof(Tap, bytes), READONLY, "this connection's bytes"},
    {"last_rx", T_DOUBLE, offsetof(Tap, last_rx), READONLY, "time.monotonic() of the last read"},
    {"retry", T_LONGLONG, offsetof(Tap, retry), READONLY, "SSE retry: field seen, or -1"},
    {"fast", T_INT, offsetof(Tap, fast), READONLY, "still on the compiled path"},
    {"t_post_ns", T_LONGLONG, offsetof(Tap, t_post_ns), 0, "when the prompt was posted"},
    {"stream", T_LONGLONG, offsetof(Tap, stream), 0, "grpc: the HTTP/2 stream read (0: none)"},
    {"unacked", T_LONGLONG, offsetof(Tap, unacked), 0, "grpc: DATA bytes not yet credited"},
    {"credit_at", T_LONGLONG, offsetof(Tap, credit_at), 0, "grpc: conn.credit(n) at this many"},
    {NULL}};

static PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clients._fastpath.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tap_init,
    .tp_dealloc = (destructor)tap_dealloc,
    .tp_traverse = (traverseproc)tap_traverse,
    .tp_clear = (inquiry)tap_clear,
    .tp_methods = tap_methods,
    .tp_members = tap_members,
    .tp_doc = "Tap(tally, slow, mode, seed, t_post_ns=0, cursor=-1, pump=None): one "
              "conversation's reader.",
};

static PyObject *set_texts(PyObject *m, PyObject *args) {
    PyObject *a, *b, *c;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyTuple_Type, &a, &PyTuple_Type, &b, &PyTuple_Type, &c))
        return NULL;
    PyObject *in[3] = {a, b, c};
    for (int k = 0; k < 3; k++) {
        if (PyTuple_GET_SIZE(in[k]) == 0) {
            PyErr_SetString(PyExc_ValueError, "empty text pool");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(in[k]); i++)
            if (!PyBytes_Check(PyTuple_GET_ITEM(in[k], i))) {
                PyErr_SetString(PyExc_TypeError, "text pools hold UTF-8 bytes");
                return NULL;
            }
    }
    for (int k = 0; k < 3; k++) {
        Py_INCREF(in[k]);
        Py_XSETREF(pools[k], in[k]);
    }
    Py_RETURN_NONE;
}

static PyObject *py_expected(PyObject *m, PyObject *args) {
    PyObject *seed;
    long long seq;
    if (!PyArg_ParseTuple(args, "OL", &seed, &seq)) return NULL;
    uint64_t s = PyLong_AsUnsignedLongLongMask(seed);
    if (PyErr_Occurred()) return NULL;
    PyObject *r = expected(s, seq);
    if (!r) {
        PyErr_SetString(PyExc_ValueError, "no text pools (set_texts) or seq < 0");
        return NULL;
    }
    Py_INCREF(r);
    return r;
}

static PyObject *py_parse_token(PyObject *m, PyObject *data) {
    Py_buffer v;
    Tok tok;
    if (PyObject_GetBuffer(data, &v, PyBUF_SIMPLE) < 0) return NULL;
    int ok = parse_token(v.buf, (const char *)v.buf + v.len, &tok);
    PyBuffer_Release(&v);
    if (!ok) Py_RETURN_NONE;
    return Py_BuildValue("(LLy#)", (long long)tok.seq, (long long)tok.t, tok.text, tok.text_len);
}

static PyObject *py_bucket_index(PyObject *self, PyObject *arg) {
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLongLong(hist_index(v));
}

static PyObject *set_clock(PyObject *m, PyObject *args) {
    long long ns;
    if (!PyArg_ParseTuple(args, "L", &ns)) return NULL;
    clock_correction_ns = (int64_t)ns;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_clock", set_clock, METH_VARARGS,
     "set_clock(ns): add ns to every wall-clock reading (the offset to the server's clock)."},
    {"bucket_index", py_bucket_index, METH_O,
     "bucket_index(value): the histogram bucket the compiled path records value in."},
    {"set_texts", set_texts, METH_VARARGS, "set_texts(plain, multi, newline): texts.py's pools."},
    {"expected", py_expected, METH_VARARGS, "expected(seed, seq): the UTF-8 text of a token."},
    {"parse_token", py_parse_token, METH_O,
     "The fast JSON path: (seq, t, text bytes), or None when Python must decide."},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "clients._fastpath",
                                    "The load generator's compiled receive path.", -1,
                                    module_methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&TallyType) < 0 || PyType_Ready(&TapType) < 0 ||
        PyType_Ready(&PumpType) < 0)
        return NULL;
    if (!one && !(one = PyLong_FromLong(1))) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&TallyType); Py_INCREF(&TapType); Py_INCREF(&PumpType);
    if (PyModule_AddObject(m, "Tally", (PyObject *)&TallyType) < 0 ||
        PyModule_AddObject(m, "Pump", (PyObject *)&PumpType) < 0 ||
        PyModule_AddObject(m, "Tap", (PyObject *)&TapType) < 0 ||
        PyModule_AddIntConstant(m, "HIST_SIZE", HSIZE) < 0 ||
        PyModule_AddIntConstant(m, "HIST_SUB_BITS", SUB_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
