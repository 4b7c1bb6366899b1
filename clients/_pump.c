/* The load generator's compiled event loop: one epoll set per load process for the sockets
 * taps read (tokenbench issue 26: the load side must stay well under the floor stack's cost).
 * Included by _fastpath.c, which owns Tap.
 *
 * Rules:
 * - uvloop still owns every socket: it connects, writes, closes and reports the end. Once a
 *   tap reads a connection (Tap.attach, right after set_protocol), the transport's reading is
 *   paused and the socket joins the pump's epoll set instead. uvloop watches the set's one fd
 *   (loop.add_reader(pump.fileno(), pump.run)); each wake, run() takes up to BATCH ready
 *   sockets, reads each once (level-triggered: what is left wakes it again) and feeds the bytes
 *   to the tap as uvloop would (Tap.data_received). A token then costs one recv and C.
 * - Anything that is not plain data (FIN, reset, an error) is uvloop's: the socket leaves the
 *   set, its reading resumes, and uvloop reads the end and tells the protocol as before. The
 *   same when the tap lets go of the connection (Python took it back, the call or the stream
 *   is over: Tap.fast or Tap.conn cleared; stop, release, connection_lost).
 * - The pump holds a reference to each tap it reads, by fd. A closed socket leaves the epoll
 *   set by itself (epoll(7)); its stale entry is dropped when the tap stops or the fd is
 *   reused, and removing checks that the entry is still this tap's.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 256
#define RECV_MAX 65536

typedef struct {
    PyObject_HEAD
    int epfd;
    Tap **by_fd; /* fd -> the tap reading it (a reference), or NULL */
    int cap;
    int64_t wakes, reads; /* run() calls and recv calls, for the loader's report */
} Pump;

static void pump_forget(Pump *p, int fd) { /* the entry only; the caller resumes uvloop */
    if (fd < 0 || fd >= p->cap || !p->by_fd[fd]) return;
    Tap *t = p->by_fd[fd];
    p->by_fd[fd] = NULL;
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT/EBADF once closed: nothing to do */
    t->pfd = -1;
    Py_CLEAR(t->transport); /* unpump took its own reference first */
    Py_DECREF(t);
}

/* The tap stops being read here: its socket goes back to uvloop, whose reading resumes. */
static void unpump(Tap *s) {
    if (s->pfd < 0 || !s->pump) return;
    Pump *p = (Pump *)s->pump;
    PyObject *tr = s->transport;
    s->transport = NULL;
    Py_INCREF(s); /* the pump's reference may be the last */
    if (s->pfd < p->cap && p->by_fd[s->pfd] == s) pump_forget(p, s->pfd);
    s->pfd = -1;
    if (tr) {
        PyObject *closing = PyObject_CallMethod(tr, "is_closing", NULL);
        if (closing && !PyObject_IsTrue(closing)) {
            PyObject *r = PyObject_CallMethod(tr, "resume_reading", NULL);
            Py_XDECREF(r);
        }
        Py_XDECREF(closing);
        PyErr_Clear(); /* a transport closing under us: uvloop reports the end itself */
        Py_DECREF(tr);
    }
    Py_DECREF(s);
}

/* Tap.attach(transport): read this connection in the pump from now on (no pump: nothing). */
static PyObject *tap_attach(Tap *s, PyObject *transport) {
    if (!s->pump || !s->fast) Py_RETURN_NONE;
    Pump *p = (Pump *)s->pump;
    PyObject *sock = PyObject_CallMethod(transport, "get_extra_info", "s", "socket");
    if (!sock) return NULL;
    if (sock == Py_None) { /* not a socket transport: uvloop keeps reading */
        Py_DECREF(sock);
        Py_RETURN_NONE;
    }
    PyObject *no = PyObject_CallMethod(sock, "fileno", NULL);
    Py_DECREF(sock);
    if (!no) return NULL;
    long fd = PyLong_AsLong(no);
    Py_DECREF(no);
    if (fd < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "attach: a closed socket");
        return NULL;
    }
    unpump(s);
    if (fd >= p->cap) {
        int cap = p->cap ? p->cap : 1024;
        while (cap <= fd) cap *= 2;
        Tap **by = PyMem_Realloc(p->by_fd, sizeof(Tap *) * cap);
        if (!by) return PyErr_NoMemory();
        memset(by + p->cap, 0, sizeof(Tap *) * (cap - p->cap));
        p->by_fd = by, p->cap = cap;
    }
    pump_forget(p, (int)fd); /* a stale tap whose socket closed and whose fd came back */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = (int)fd};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, (int)fd, &ev) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *r = PyObject_CallMethod(transport, "pause_reading", NULL);
    if (!r) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, (int)fd, NULL);
        return NULL;
    }
    Py_DECREF(r);
    Py_INCREF(s);
    Py_INCREF(transport);
    p->by_fd[fd] = s, s->pfd = (int)fd, s->transport = transport;
    Py_RETURN_NONE;
}

static PyObject *pump_run(Pump *p, PyObject *unused) {
    struct epoll_event evs[BATCH];
    static char buf[RECV_MAX];
    p->wakes++;
    int n = epoll_wait(p->epfd, evs, BATCH, 0);
    if (n < 0 && errno != EINTR) return PyErr_SetFromErrno(PyExc_OSError);
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        Tap *s = fd < p->cap ? p->by_fd[fd] : NULL;
        if (!s) continue; /* left the set earlier in this batch */
        Py_INCREF(s);
        ssize_t got = -1;
        if (!(evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
            p->reads++;
            got = recv(fd, buf, RECV_MAX, 0);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                Py_DECREF(s);
                continue;
            }
        }
        if (got > 0) {
            /* the transport as it was: a callback that raises may have let go of it first */
            PyObject *tr = s->transport;
            Py_XINCREF(tr);
            PyObject *data = PyBytes_FromStringAndSize(buf, got);
            PyObject *r = data ? tap_data_received(s, data) : NULL;
            Py_XDECREF(data);
            if (!r) { /* a bug in a callback: say so, and drop that connection */
                PyErr_WriteUnraisable((PyObject *)s);
                unpump(s);
                if (tr) {
                    PyObject *x = PyObject_CallMethod(tr, "abort", NULL);
                    Py_XDECREF(x);
                    PyErr_Clear();
                    Py_DECREF(tr);
                }
            } else {
                Py_DECREF(r);
                Py_XDECREF(tr);
                if (!s->fast || !s->conn) unpump(s);
            }
        } else {
            unpump(s); /* the end, a reset or an error: uvloop reads it and tells the tap */
        }
        Py_DECREF(s);
    }
    Py_RETURN_NONE;
}

static PyObject *pump_fileno(Pump *p, PyObject *unused) { return PyLong_FromLong(p->epfd); }

static PyObject *pump_stats(Pump *p, PyObject *unused) {
    int open = 0;
    for (int i = 0; i < p->cap; i++) open += p->by_fd[i] != NULL;
    return Py_BuildValue("{s:L,s:L,s:i}", "wakes", (long long)p->wakes, "reads",
                         (long long)p->reads, "open", open);
}

static int pump_init(Pump *p, PyObject *args, PyObject *kw) {
    if (!PyArg_ParseTuple(args, "")) return -1;
    if (p->epfd <= 0 && (p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int pump_traverse(Pump *p, visitproc visit, void *arg) {
    for (int i = 0; i < p->cap; i++) Py_VISIT(p->by_fd[i]);
    return 0;
}

static int pump_clear(Pump *p) {
    for (int i = 0; i < p->cap; i++) {
        if (p->by_fd[i]) p->by_fd[i]->pfd = -1;
        Py_CLEAR(p->by_fd[i]);
    }
    return 0;
}

static void pump_dealloc(Pump *p) {
    PyObject_GC_UnTrack(p);
    pump_clear(p);
    PyMem_Free(p->by_fd);
    if (p->epfd > 0) close(p->epfd);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyMethodDef pump_methods[] = {
    {"run", (PyCFunction)pump_run, METH_NOARGS,
     "Read every ready socket once (loop.add_reader(pump.fileno(), pump.run))."},
    {"fileno", (PyCFunction)pump_fileno, METH_NOARGS, "The epoll set's fd."},
    {"stats", (PyCFunction)pump_stats, METH_NOARGS, "{wakes, reads, open}: counts so far."},
    {NULL}};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clients._fastpath.Pump",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pump_init,
    .tp_dealloc = (destructor)pump_dealloc,
    .tp_traverse = (traverseproc)pump_traverse,
    .tp_clear = (inquiry)pump_clear,
    .tp_methods = pump_methods,
    .tp_doc = "Pump(): the load process's epoll set for the sockets its taps read.",
};
