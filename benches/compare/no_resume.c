/* LD_PRELOAD shim for wrk: every new connection makes a full TLS handshake.
 *
 * wrk reconnects by calling SSL_clear() on the connection's SSL object and handshaking
 * again; SSL_clear() keeps the last session, so the next handshake resumes it (checked:
 * ~98% of wrk's "Connection: close" handshakes were resumptions). Dropping the session
 * before SSL_clear() makes each handshake a full one. compare.sh checks the result on a
 * server that logs $ssl_session_reused. */
#define _GNU_SOURCE
#include <dlfcn.h>

typedef struct ssl_st SSL;

int SSL_clear(SSL *s) {
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, void *);
    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    if (set_session)
        set_session(s, 0);
    return real_clear(s);
}
