/* nbdkit front end: the declarations shared between its files.
 *
 * Each core object is owned by one file and reached by others only
 * through the functions declared here:
 *   struct options   main.c       the command line
 *   the event loop   loop.c       one libev loop, signals, quitting
 *   log              log.c        messages to stderr or syslog
 *   listeners        listen.c     TCP, unix, -s
 *   struct conn      conn.c       one client: buffered non-blocking I/O
 *   handshake        handshake.c  the newstyle option haggling
 *   transmission     transmit.c   NBD requests -> backend requests
 *   struct backend_proc  backend-proc.c  one backend process, and every
 *                    message sent to it; its parts: backend-spawn.c
 *                    (process), backend-channel.c (frames),
 *                    supervisor.c (life cycle), backend-handles.c
 *                    (the handles opened in it), liveness.c (PING),
 *                    arena.c (shared memory) -- see backend-proc.h
 *   daemonizing      daemon.c     fork into the background, readiness
 *   TLS              tls.c        gnutls credentials and sessions
 *   struct chain     filter-chain.c  the layers of an open export: the
 *                    filters, then the backend (backend-layer.c)
 *
 * docs/nbdkit-internals.pod walks through them.
 *
 * Nothing in the front end blocks once the loop runs, except the
 * synchronous start-up conversation with the backend before listening.
 */

#ifndef NBDKIT_INTERNAL_H
#define NBDKIT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>
#include <jansson.h>

#include "helper-protocol.h"
#include "protocol.h"
#include "errors.h"
/* The filter API: struct export_caps, backend_cb, payload_free and
 * what the server offers filters are declared there.
 */
#include "../filters/filter.h"

#define PROGRAM_NAME "nbdkit"

/* ---- main.c: the command line ---- */

struct config_param {
  char *key;
  char *value;
  bool bare;                    /* given without KEY=: key is the magic one */
};

enum tls_mode { TLS_OFF, TLS_ON, TLS_REQUIRE };

struct filter;

struct options {
  const char *backend_name;     /* as given on the command line */
  const struct filter **filters;        /* --filter, nearest the client first */
  size_t nr_filters;
  char *backend_path;           /* the executable that is run */
  struct config_param *params;  /* key=value, magic keys resolved */
  size_t nr_params;
  const char *exportname;       /* -e, "" by default */
  bool foreground;              /* -f (or implied) */
  bool readonly;                /* -r */
  bool single;                  /* -s */
  bool verbose;                 /* -v */
  bool no_sr;                   /* --no-sr */
  bool oldstyle;                /* -o */
  unsigned mask_handshake;      /* --mask-handshake, default all bits */
  enum tls_mode tls;            /* --tls */
  const char *tls_certificates; /* --tls-certificates */
  const char *tls_psk;          /* --tls-psk */
  const char *tls_priority;     /* --tls-priority */
  bool tls_verify_peer;         /* --tls-verify-peer */
  /* Running as a service, or captive. */
  const char *run;              /* --run CMD */
  bool print_uri;               /* --print-uri */
  bool exit_with_parent;        /* --exit-with-parent */
  bool vsock;                   /* --vsock */
  const char *user, *group;     /* -u, -g */
  const char *selinux_label;    /* --selinux-label */
  enum { LOGDEST_DEFAULT, LOGDEST_STDERR, LOGDEST_SYSLOG, LOGDEST_NULL } log;
                                /* --log */
  bool socket_activated;        /* LISTEN_FDS */
  const char *ipaddr;           /* -i */
  const char *port;             /* -p */
  const char *unixsocket;       /* -U path, or the private one for -U - */
  char *private_dir;            /* -U -: directory removed at exit */
  int unix_socket_mode;         /* --unix-socket-mode, -1: 0755 & ~umask */
  const char *pidfile;          /* -P */
  unsigned threads;             /* -t, 0 = backend's default */
  json_t *backend_debug;        /* -D flags for the backend: {"flag":N} */
  json_t *server_debug;         /* -D flags for the front end */
  /* Supervision of the backend. */
  double backend_timeout;       /* --backend-timeout, 0 = none */
  double ping_interval;         /* --backend-ping-interval, 0 = none */
  double ping_timeout;          /* --backend-ping-timeout */
  unsigned max_restarts;        /* --backend-max-restarts */
  double restart_window;        /* --backend-restart-window */
  bool on_failure_error;        /* --backend-failure=error */
  bool backend_uid_set, backend_gid_set;
  uid_t backend_uid;            /* --backend-user */
  gid_t backend_gid;            /* --backend-group */
  struct backend_rlimit *rlimits;   /* --backend-rlimit */
  size_t nr_rlimits;
};

struct backend_rlimit {
  int resource;                 /* RLIMIT_* */
  unsigned long long value;
};

extern struct options opt;

/* -D nbdkit.FLAG=N: the value of FLAG for the front end, or def. */
extern int server_debug_flag (const char *flag, int def);

/* ---- log.c ---- */

extern void log_start (void);         /* apply --log */
extern void log_use_syslog (void);    /* forked: syslog unless --log */
extern void nbdkit_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern void nbdkit_debug (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
/* "nbdkit: warning: ...", with or without -v. */
extern void server_warning (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
/* With -v: a debug message about one connection, as nbdkit prefixes
 * them ("nbdkit: NAME[N]: debug: ...").
 */
extern void log_conn_debug (const char *name, uint64_t connection,
                            const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* A line the backend called name wrote on its stderr. */
extern void log_backend_line (const char *name, const char *line);
extern void log_debug_always (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* log-writer.c: the thread that writes log lines once the loop runs. */
extern void log_writer_start (void);
extern bool log_writer_queue (int priority, bool to_syslog,
                              const char *text, size_t len);
/* Fatal error before the loop runs: message, exit 1. */
extern void die (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

/* ---- loop.c ---- */

extern struct ev_loop *loop;
extern void loop_init (void);
extern int loop_run (void);           /* returns the exit status */
/* Something to write just before the loop waits (see loop.c).  Queueing
 * one already queued does nothing; fn is called once, then it may be
 * queued again.
 */
struct loop_flush {
  struct loop_flush *next;
  bool queued;
  void (*fn) (struct loop_flush *f);
};
extern void loop_flush_queue (struct loop_flush *f);
extern void loop_flush_cancel (struct loop_flush *f);

/* ---- loop-watchdog.c ---- */

/* With -D nbdkit.loop_watchdog=1 or NBDKIT_LOOP_WATCHDOG_FILE: report
 * every turn of the loop that blocked or worked over 10 ms.
 */
extern void loop_watchdog_start (void);
/* Begin an orderly shutdown with the given exit status. */
extern void server_quit (int status);
extern bool server_quitting (void);
/* A connection closed (lets a shutdown finish). */
extern void server_connection_ended (void);

/* ---- daemon.c ---- */

/* Fork into the background unless foreground; the parent waits until
 * daemon_ready or the child fails, and exits with 0 or 1.
 */
extern void daemon_start (void);
extern void daemon_ready (void);
/* -P: written once listening, before privileges are dropped. */
extern void daemon_write_pidfile (void);

/* ---- tls.c ---- */

struct tls;
enum { TLS_DONE, TLS_WANT_READ, TLS_WANT_WRITE, TLS_ERROR };

extern void tls_init (void);          /* load credentials; exits 1 */
extern void tls_cleanup (void);
extern const char *tls_certificates_dir (void);
/* A server session on the client's sockets; early (copied) are bytes
 * already read that begin the TLS stream.
 */
extern struct tls *tls_new (int rfd, int wfd, const void *early,
                            size_t early_len);
extern void tls_free (struct tls *t);
/* One step of the handshake: TLS_DONE, TLS_WANT_* or TLS_ERROR. */
extern int tls_handshake (struct tls *t, const char *peer);
/* Like read(2) and write(2): -1 with errno EAGAIN when it would block. */
extern ssize_t tls_recv (struct tls *t, void *buf, size_t len);
extern ssize_t tls_send (void *t, const void *buf, size_t len);
/* Decrypted bytes gnutls holds that the socket will not signal. */
extern size_t tls_pending (struct tls *t);
extern void tls_bye (struct tls *t);

/* ---- inline-script.c ---- */

/* The value of a script= parameter as the backend can use it: value
 * itself, or the path of a copy of a script read from standard input
 * ("-") or a pipe (<(...)).  Start-up only (exits 1 on errors).
 */
extern const char *inline_script (const char *value);
extern void inline_script_cleanup (void);

/* ---- captive.c: --run, --print-uri, --exit-with-parent ---- */

extern char *captive_uri (void);
extern void captive_print_uri (void);
extern void captive_run (void);
/* After the loop: with --run, wait for the command if it still runs
 * and give its exit status; else status.
 */
extern int captive_wait (int status);
extern void captive_exit_with_parent (void);

/* ---- service.c: systemd and privileges ---- */

/* LISTEN_FDS: the number of sockets passed (0 = not activated). */
extern unsigned service_listen_fds (void);
extern void service_ready (void);     /* sd_notify READY=1, watchdog */
extern void service_stopping (void);  /* sd_notify STOPPING=1 */
extern void service_resolve_ids (void);       /* -u, -g: look them up */
extern void service_drop_privileges (void);   /* -u, -g */

/* ---- probe.c: --dump-config ---- */

extern void probe_dump_config (void);

/* ---- listen.c ---- */

extern void listen_start (void);      /* bind; exits 1 on failure */
/* --selinux-label can be applied (built with libselinux, SELinux on,
 * a valid context), else die with the reason.
 */
extern void listen_check_selinux_label (void);
/* Socket activation: serve on these already listening sockets. */
extern void listen_adopt (int first_fd, unsigned n);
extern void listen_stop (void);
extern void listen_cleanup (void);    /* remove the private socket dir */
extern void serve_single (void);      /* -s: one connection on stdin/out */
/* A connection ended: the listener may accept again. */
extern void listen_conn_ended (void);
extern unsigned nr_connections;

/* ---- conn.c ---- */

struct conn;
typedef void (*conn_read_cb) (struct conn *);

extern struct conn *conn_new (int rfd, int wfd, const char *peer);
extern void conn_close (struct conn *conn);
extern void conn_close_all (void);
/* Shutting down: read no more requests, close each connection once its
 * requests in flight are answered.
 */
extern void conn_drain_all (void);
extern void conn_ref (struct conn *conn);
extern void conn_unref (struct conn *conn);
extern bool conn_is_closed (const struct conn *conn);
extern const char *conn_peer (const struct conn *conn);
/* The connection's number: 1, 2, ... in the order they came. */
extern uint64_t conn_id (const struct conn *conn);
/* Reading: ask for exactly len bytes into buf, then cb runs.  With buf
 * NULL the bytes are discarded.  Nothing is read while no read is
 * requested (the connection is paused).
 */
extern void conn_read (struct conn *conn, void *buf, size_t len,
                       conn_read_cb cb);
/* The same into a mapping of a file (ip, see passthrough.c's
 * in_place); then conn_read_error says, in cb, whether the bytes
 * could not all be written there (an errno; the rest was discarded).
 */
struct in_place;
extern void conn_read_in_place (struct conn *conn, const struct in_place *ip,
                                size_t len, conn_read_cb cb);
extern int conn_read_error (const struct conn *conn);
/* Writing: queue bytes; small is copied, data (if not NULL) is sent
 * after it and released with free_data once written or dropped.
 */
extern void conn_write (struct conn *conn, const void *small, size_t len,
                        void *data, size_t data_len,
                        void (*free_data) (void *));
extern size_t conn_output_bytes (const struct conn *conn);
/* Close once all queued output has been written. */
extern void conn_close_after_output (struct conn *conn);
/* STARTTLS: once the queued (plaintext) output is written, run the TLS
 * handshake; then done runs, and all I/O is encrypted.  On failure the
 * connection closes.
 */
extern void conn_start_tls (struct conn *conn, conn_read_cb done);
extern bool conn_is_tls (const struct conn *conn);
/* Per-connection protocol state, owned by handshake.c / transmit.c. */
extern struct session *conn_session (struct conn *conn);

/* ---- handshake.c ---- */

/* State of one client past the socket layer. */
struct session {
  struct backend_proc *bp;     /* the backend serving it */
  bool no_zeroes;
  bool structured;             /* NBD_OPT_STRUCTURED_REPLY negotiated */
  bool base_allocation;        /* "base:allocation" selected */
  char *meta_export;           /* the export SET_META_CONTEXT named */
  bool fixed;                  /* the client speaks fixed newstyle */
  unsigned nr_options, max_options;
  uint32_t option;             /* option being handled */
  uint32_t optlen;
  unsigned char opthdr[16];
  char *optdata;
  /* transmission */
  bool transmitting;
  struct chain *chain;         /* the open export, NULL = none */
  struct export_caps caps;
  uint16_t eflags;             /* transmission flags sent to the client */
  unsigned char reqhdr[NBD_REQUEST_SIZE];
  struct request *cur;          /* write whose payload is being read */
  unsigned in_flight;
  uint64_t read_bytes_in_flight;  /* replies to come: counted as output */
  uint64_t write_bytes_in_flight; /* payloads of writes in the chain */
  bool paused;                 /* stopped reading: too much in flight */
  bool disconnecting;          /* NBD_CMD_DISC or EOF seen */
};

extern void handshake_start (struct conn *conn);
extern void session_free (struct conn *conn);
extern void caps_free (struct export_caps *caps);

/* ---- transmit.c ---- */

extern void transmit_start (struct conn *conn);
/* Output drained or a request finished: maybe read more. */
extern void transmit_maybe_resume (struct conn *conn);
/* Stop reading requests; close once those in flight are answered. */
extern void transmit_drain (struct conn *conn);
/* Release a write that was cut off by the connection closing. */
extern void transmit_free_current (struct conn *conn);

/* ---- backend-proc.c: struct backend_proc, one backend process ---- */

enum thread_model {
  THREAD_MODEL_SERIALIZE_CONNECTIONS,
  THREAD_MODEL_SERIALIZE_ALL_REQUESTS,
  THREAD_MODEL_SERIALIZE_REQUESTS,
  THREAD_MODEL_PARALLEL,
};

/* What the backend said of itself in HELLO. */
struct backend_info {
  char *name;
  char *version;
  char *longname;
  char *description;
  char *magic_config_key;       /* NULL if none */
  char *config_help;
  enum thread_model thread_model;
  bool wants_memfd;             /* features: "memfd" */
  bool wants_shm;               /* features: "shm" */
  json_t *callbacks;            /* names of the callbacks it has, or NULL */
  json_t *fd_keys;              /* keys whose value names a descriptor */
};

/* One backend process and all the front end keeps about it: the
 * process, its channel, its supervisor state and handles, its arena.
 * The server runs one (-D nbdkit.backend_procs=N runs N alike, each
 * connection served by one of them in turn).
 */
struct backend_proc;
struct bhandle;

/* Completion of one backend request: backend_cb (filter.h). */

/* Start-up (exits 1 on failure): make the server's backend processes
 * (not started yet).
 */
extern void bproc_create_all (unsigned n);
/* At exit: stop each, in an orderly way (supervisor_stop). */
extern void bproc_stop_all (void);
extern struct backend_proc *bproc_first (void);
extern struct backend_proc *bproc_next (const struct backend_proc *bp);
/* The backend_proc that serves the next connection. */
extern struct backend_proc *bproc_for_connection (void);
extern const struct backend_info *bproc_info (const struct backend_proc *bp);
/* The backend's name, for messages. */
extern const char *bproc_name (const struct backend_proc *bp);

/* The messages, one function each (docs/nbdkit-helper-protocol.pod).
 * Control messages carry JSON (req: NULL = {}, reference stolen); the
 * reply's payload is JSON, parsed with bproc_parse_json.  CH_STARTUP
 * marks a message for this incarnation only (never held nor sent
 * again).
 */
#define CH_STARTUP 1
extern void bproc_hello (struct backend_proc *bp, backend_cb cb,
                         void *opaque);
/* fd (or -1) goes with the frame: a descriptor the parameter names. */
extern void bproc_config (struct backend_proc *bp, const char *key,
                          const char *value, int fd, backend_cb cb,
                          void *opaque);
extern void bproc_config_complete (struct backend_proc *bp, backend_cb cb,
                                   void *opaque);
extern void bproc_get_ready (struct backend_proc *bp, backend_cb cb,
                             void *opaque);
extern void bproc_attach_fd (struct backend_proc *bp, const char *purpose,
                             size_t size, int fd, backend_cb cb,
                             void *opaque);
extern void bproc_dump (struct backend_proc *bp, backend_cb cb,
                        void *opaque);
/* connection: the server's number of the client connection (0 =
 * none), so that the backend runs preconnect and default_export once
 * per connection.
 */
extern void bproc_list_exports (struct backend_proc *bp, uint64_t connection,
                                bool readonly, bool tls, backend_cb cb,
                                void *opaque);
extern void bproc_default_export (struct backend_proc *bp,
                                  uint64_t connection, bool readonly,
                                  bool tls, backend_cb cb, void *opaque);
/* OPEN: flags 0 for a client's, CH_STARTUP for a re-open.
 * previous_fd: at a re-open, the handle's descriptor given back to the
 * backend with the frame ("previous_fd"), which the caller keeps open
 * until cb runs; else -1.  -1 (and cb is not called) if the request
 * cannot be made (the export name is not valid UTF-8, or out of
 * memory).
 */
extern int bproc_open_msg (struct backend_proc *bp, uint64_t connection,
                           const char *export, bool readonly, bool tls,
                           bool description, const char *client,
                           int previous_fd, unsigned flags, backend_cb cb,
                           void *opaque);
/* CLOSE; cb (may be NULL) gets the reply. */
extern void bproc_close_msg (struct backend_proc *bp, uint32_t handle,
                             backend_cb cb, void *opaque);
extern void bproc_ping (struct backend_proc *bp, unsigned flags,
                        backend_cb cb, void *opaque);
extern void bproc_shutdown (struct backend_proc *bp, backend_cb cb,
                            void *opaque);
/* A data request (PREAD ... EXTENTS) on an open handle; payload (a
 * write's, may be an arena slot) is taken.
 */
extern void bproc_data (struct backend_proc *bp, struct bhandle *bh,
                        uint16_t type, uint16_t flags, uint64_t offset,
                        uint32_t count, void *payload, backend_cb cb,
                        void *opaque);
/* A buffer for a payload that will go to this backend (an arena slot
 * when it can be, else malloc'd); release it with payload_free.
 */
extern void *bproc_payload_alloc (struct backend_proc *bp, size_t len);
/* Parse a reply payload as a JSON object (NULL on error, *why set). */
extern json_t *bproc_parse_json (const void *payload, uint32_t len,
                                 const char **why);

/* ---- backend-info.c: what the backend said in HELLO ---- */

/* -1 (nothing set) if the reply names an unknown thread model. */
extern int backend_info_from_hello (struct backend_proc *bp, json_t *hello);
extern const char *thread_model_name (enum thread_model m);
extern void backend_lower_thread_model (struct backend_proc *bp,
                                        const char *name);

/* ---- backend-spawn.c: the process ---- */

extern char *backend_locate (const char *name);
/* Where backends given by name are looked for. */
extern const char *backend_dir (void);
/* Start a process and open the channel to it; false on failure. */
extern bool backend_spawn (struct backend_proc *bp);
extern pid_t backend_pid (const struct backend_proc *bp);
/* SIGKILL for the backend and everything it started; SIGTERM for the
 * backend alone.  Nothing if no process runs.  Its end is reported to
 * the supervisor (supervisor_backend_exited) as always.
 */
extern void backend_kill (struct backend_proc *bp);
extern void backend_terminate (struct backend_proc *bp);

/* ---- supervisor.c: the backend's life cycle; backend-handles.c: the
 * handles opened in it ---- */

/* A handle opened in the backend for one client.  The id changes when
 * the backend restarts and the handle is re-opened.
 */
struct bhandle {
  struct bhandle *next, *prev;
  struct backend_proc *bp;
  uint64_t connection;          /* the client connection's number */
  uint32_t id;                  /* the backend's handle */
  bool valid;                   /* false: lost in a restart */
  bool reopening, closing;
  bool readonly;
  bool tls;
  bool description;             /* asked for the export's description */
  char *export;
  char *client;
  uint64_t size;
  struct passthrough *pt;       /* the front end does its I/O, or NULL */
  /* With -D nbdkit.passthrough=0: the descriptor of the handle's data
   * that the backend handed over all the same (OPEN said "keep"), kept
   * only to be given back at a re-open; else -1.
   */
  int kept_fd;
  int reopen_fd;                /* the copy a re-open in flight carries */
};

/* Opening: on success bh is set and caps is the OPEN reply (borrowed);
 * else status and msg say why.
 */
typedef void (*backend_open_cb) (void *opaque, struct bhandle *bh,
                                 json_t *caps, uint32_t status,
                                 const char *msg);

/* ---- passthrough.c: the I/O on a backend's descriptor ---- */

struct passthrough;
struct freq;
/* -D nbdkit.passthrough (default 1): OPEN asks for the descriptor. */
extern bool passthrough_enabled (void);
/* In the callback of an OPEN reply j: the handle's passthrough, taking
 * the descriptor that came with it, or NULL (the backend does the I/O).
 */
extern struct passthrough *passthrough_from_open (struct backend_proc *bp,
                                                  json_t *j, bool readonly);
/* Drop a reference (NULL: nothing); the last closes the descriptor. */
extern void passthrough_put (struct passthrough *pt);
/* The descriptor (still pt's: valid while pt is). */
extern int passthrough_fd (const struct passthrough *pt);
/* Do r on the descriptor (later, completing r): false if it is not one
 * to do here (then send it to the backend).
 */
extern bool passthrough_request (struct passthrough *pt, struct freq *r);
/* Where a write's payload may be received in place: a shared mapping
 * of the file, written only by the kernel -- a recv into buf, or a
 * pwrite to fd at offset of bytes already read into a buffer -- and
 * only while ready () says so (else wait and ask again).
 */
struct in_place {
  void *buf;                    /* the first byte of the write */
  int fd;
  uint64_t offset;              /* of buf in the file */
  bool (*ready) (void);
};
/* Can the payload of a PWRITE to pt (hp flags, offset, count) be
 * received in place?  If so *ip says where; ip->buf is the request's
 * data (released with payload_free), and the PWRITE is then done as
 * soon as it reaches pt.
 */
extern bool passthrough_write_in_place (struct passthrough *pt,
                                        uint16_t flags, uint64_t offset,
                                        uint32_t count, struct in_place *ip);

/* First start, before listening: exits 1 with the reason on failure.
 * hello_done runs once the first backend has introduced itself.
 */
extern void supervisor_start (struct backend_proc *bp,
                              void (*hello_done) (struct backend_proc *bp));
extern void supervisor_stop (struct backend_proc *bp);
extern bool supervisor_may_hold (const struct backend_proc *bp);
extern bool supervisor_is_ready (const struct backend_proc *bp);
/* Found hung (no answer in time): killed and restarted, requests that
 * may be sent again are held for the next incarnation.
 */
extern void supervisor_backend_hung (struct backend_proc *bp);
extern unsigned supervisor_restarts (const struct backend_proc *bp);
extern void supervisor_protocol_error (struct backend_proc *bp,
                                       const char *why);
extern void supervisor_channel_lost (struct backend_proc *bp);
extern void supervisor_backend_exited (struct backend_proc *bp);
extern void backend_open (struct backend_proc *bp, uint64_t connection,
                          const char *export, bool readonly, bool tls,
                          bool description, const char *client,
                          backend_open_cb cb, void *opaque);
extern void backend_close (struct bhandle *bh);
/* The same; done (if not NULL) runs once the backend has closed it (at
 * once if it need not be told), so that a new open cannot overtake the
 * close.
 */
extern void backend_close_then (struct bhandle *bh,
                                void (*done) (void *opaque), void *opaque);

/* ---- liveness.c: PING ---- */

/* Whether the backend now running listed "ping" in its HELLO. */
extern void liveness_offered (struct backend_proc *bp, bool yes);
extern bool supervisor_backend_answers_ping (const struct backend_proc *bp);
extern void liveness_start (struct backend_proc *bp);
extern void liveness_stop (struct backend_proc *bp);

/* ---- arena.c: the shared-memory arena of the data path ---- */

/* Default size of the arena in MiB (virtual: pages count once
 * touched).
 */
#define ARENA_DEFAULT_MIB 256

struct arena;
/* A new arena of bytes (a multiple of 256 KiB), or NULL with errno. */
extern struct arena *arena_create (size_t bytes);
extern int arena_fd (const struct arena *a);
extern size_t arena_size (const struct arena *a);
/* Whether the backend now running accepted the arena: only then does
 * arena_alloc hand out slots.
 */
extern void arena_set_active (struct arena *a, bool on);
extern bool arena_is_active (const struct arena *a);
extern bool arena_contains (const struct arena *a, const void *p);
extern uint64_t arena_offset (const struct arena *a, const void *p);
extern size_t arena_pages_in_use (const struct arena *a);
/* A slot of at least len bytes, page aligned, or NULL. */
extern void *arena_alloc (struct arena *a, size_t len);
extern void arena_free (struct arena *a, void *p);
/* A slot that a backend which is going away may still write: freed by
 * arena_release_quarantine once that process has exited.
 */
extern void arena_quarantine (struct arena *a, void *p);
extern void arena_release_quarantine (struct arena *a);
/* A slot if the arena is active and has room, else malloc'd memory. */
extern void *arena_payload_alloc (struct arena *a, size_t len);
/* payload_free (filter.h) releases any payload: a slot of any
 * arena, malloc'd memory, or a pointer into a range added here, for
 * which it calls release (opaque) instead.  A range may be a mapping
 * of a file (fd, not -1: the file's bytes from offset 0).
 */
extern int payload_range_add (const void *lo, size_t len,
                              void (*release) (void *opaque),
                              void *opaque, int fd);
extern void payload_range_remove (const void *lo);
/* Is p in a range mapping a file, to be sent from the file (sendfile,
 * not through TLS)?  Then *fd is the file and *offset the offset of p
 * in it.  Never with -D nbdkit.passthrough_sendfile=0
 * (payload_sendfile says which).
 */
extern bool payload_in_file (const void *p, int *fd, uint64_t *offset);
extern bool payload_sendfile (void);

/* ---- backend-channel.c: frames over the socketpair ---- */

typedef void (*channel_timeout_cb) (struct backend_proc *bp,
                                    const struct hp_header *req,
                                    double waited);

/* Before starting a process: what the channel needs, so that opening
 * it cannot fail (false: out of memory).
 */
extern bool channel_reserve (struct backend_proc *bp);
extern void channel_open (struct backend_proc *bp, int fd);
/* In the callback of a reply: the descriptor that came with it (the
 * caller owns it now), or -1.  One not taken is closed after the
 * callback.
 */
extern int channel_take_reply_fd (struct backend_proc *bp);
/* Stop using the channel.  keep_for_resend: requests in flight that are
 * safe to repeat wait for the next backend; the rest fail.
 */
extern void channel_close (struct backend_proc *bp, bool keep_for_resend);
extern bool channel_is_open (const struct backend_proc *bp);
/* The backend exited: handle the replies it sent before it went. */
extern void channel_read_remaining (struct backend_proc *bp);
/* The backend is ready: send what was held. */
extern void channel_set_ready (struct backend_proc *bp);
extern void channel_fail_held (struct backend_proc *bp);
extern void channel_set_timeout (struct backend_proc *bp, double secs,
                                 channel_timeout_cb cb);
/* Send a request: h->type, flags, handle, offset, count are used (the
 * handle is bh's current id when bh is given); the id is assigned
 * here.  payload (may be NULL or an arena slot) belongs to the channel.
 * fd (or -1) is passed with the frame (SCM_RIGHTS; not closed here).
 */
extern void channel_send (struct backend_proc *bp, const struct hp_header *h,
                          struct bhandle *bh, void *payload, uint32_t len,
                          int fd, unsigned flags, backend_cb cb,
                          void *opaque);
extern size_t channel_in_flight (const struct backend_proc *bp);

/* ---- filter-table.c ---- */

extern const struct filter *filter_lookup (const char *name);
extern void filter_list_names (char *buf, size_t len);

/* ---- filter-chain.c: the layers of an open export ---- */

/* An open export of one connection is a chain of layers: each --filter,
 * nearest the client first, then the backend process (backend-layer.c),
 * all behind struct filter.
 */
struct chain;

/* Opening: on success ch is set and caps are the export's capabilities
 * as the filters left them (the callee takes the strings in it); else
 * status and msg say why.
 */
typedef void (*chain_open_cb) (void *opaque, struct chain *ch,
                               struct export_caps *caps, uint32_t status,
                               const char *msg);

/* description: the client asked for the export's description (else
 * the backend need not work it out).
 */
extern void chain_open (struct backend_proc *bp, uint64_t connection,
                        const char *export, bool readonly, bool tls,
                        bool description, const char *client,
                        chain_open_cb cb, void *opaque);
/* The owner is done with it (NULL: nothing).  It goes once nothing of
 * it is in flight.
 */
extern void chain_close (struct chain *ch);
/* A request from the client: h's type, flags, offset and count; data
 * (taken) a write's payload of len bytes.  cb gets the reply.
 */
extern void chain_send (struct chain *ch, const struct hp_header *h,
                        void *data, uint32_t len, backend_cb cb,
                        void *opaque);
/* A buffer for a write's payload to give chain_send (the bottom
 * layer's kind; released with payload_free).
 */
extern void *chain_data_alloc (struct chain *ch, size_t len);
/* Or, with no filter, where the payload of a write may be received in
 * place (passthrough_write_in_place): false if it may not.
 */
extern bool chain_write_in_place (struct chain *ch, uint16_t flags,
                                  uint64_t offset, uint32_t count,
                                  struct in_place *ip);
/* Does r go from the client straight to the bottom layer, with no
 * filter to see (or change) its reply's payload on the way?
 */
extern bool freq_unfiltered (const struct freq *r);
/* ... and from a client without TLS: its reply's payload may be sent
 * from a file (payload_in_file) without this process reading it.
 */
extern bool freq_from_plain_client (const struct freq *r);
/* NBD_OPT_LIST through the layers: cb gets the list (status 0) or an
 * error; the list is freed after cb returns.
 */
typedef void (*chain_list_cb) (void *opaque, uint32_t status,
                               const char *msg,
                               const struct fexport *exports, size_t n);
extern void chain_list_exports (struct backend_proc *bp, uint64_t connection,
                                bool readonly, bool tls, const char *peer,
                                chain_list_cb cb, void *opaque);
/* -v traces this class of calls (control path: false, data path:
 * true)?
 */
extern bool chain_tracing (bool datapath);
/* chain-trace.c: the name of layer i (a filter's, or bp's), and -v's
 * line for request r entering it, on connection number c.
 */
extern const char *chain_layer_name (struct backend_proc *bp, size_t i);
extern void chain_trace_request (struct backend_proc *bp, uint64_t c,
                                 size_t layer, const struct freq *r);
/* The server begins to stop: each filter's stopping callback. */
extern void chain_stopping (void);
/* A client connected: false if a filter refuses it. */
extern bool chain_accept (int fd, const char *peer);
/* A connection that chain_accept let in has ended. */
extern void chain_closed (void);

/* ---- backend-layer.c: the backend process as the last layer ---- */

/* The layer's struct filter; its open uses fopen_backend_proc (o). */
extern const struct filter backend_layer;
/* chain_write_in_place at the bottom layer's handle. */
extern bool backend_layer_write_in_place (void *handle, uint16_t flags,
                                          uint64_t offset, uint32_t count,
                                          struct in_place *ip);
/* Close a handle of the layer, then done (see backend_close_then). */
extern void backend_layer_close_then (void *handle,
                                      void (*done) (void *opaque),
                                      void *opaque);
extern struct backend_proc *fopen_backend_proc (const struct fopen *o);
/* The export's capabilities from the backend's OPEN reply: -1 and *why
 * if the reply is not valid (no size, bad block size constraints).
 */
extern int caps_from_json (json_t *j, struct export_caps *caps,
                           const char **why);
extern bool fopen_wants_description (const struct fopen *o);

#endif /* NBDKIT_INTERNAL_H */
