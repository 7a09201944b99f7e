#include "static_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "conn.h"
#include "http_reply.h"
#include "server.h"

/* Files larger than this are not served from web_root. */
#define STATIC_MAX_FILE (64 * 1024 * 1024)

/* The built-in assets: client/js/chorus.js at /chorus.js and each
 * client/web/NAME at /NAME, compiled in by cmake/embed_assets.cmake so that
 * a bare chorusd serves the client and the demo page with nothing
 * installed. The generated source defines the table with this same struct;
 * it ends with a NULL path. etag is quoted, ready for the header. */
struct static_asset {
    const char *path;
    const unsigned char *data;
    size_t len;
    const char *etag;
};
extern const struct static_asset static_assets[];

static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *mime_type(const char *path)
{
    const char *dot = strrchr(path, '.');

    for (size_t i = 0; dot && i < sizeof mime_types / sizeof mime_types[0]; i++)
        if (strcmp(dot, mime_types[i].ext) == 0)
            return mime_types[i].type;
    return "application/octet-stream";
}

/* A safe relative path: decoded, no "..", no empty or hidden segment. */
static int safe_path(const char *path, size_t len, char *out, size_t size)
{
    int n = chorus_http_percent_decode(path, len, out, size);

    if (n <= 0 || out[0] != '/')
        return -1;
    for (const char *seg = out; seg; seg = strchr(seg + 1, '/'))
        if (seg[1] == '.' || (seg[1] == '/' && seg != out))
            return -1;
    return n;
}

static int method_ok(const chorus_http_request *req, int *head)
{
    *head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    return *head ||
           (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0);
}

/* If-None-Match lists the ETag (or is "*"): the client's copy is current.
 * Our ETags are quoted and hold no quote, so finding the quoted form in the
 * list is an exact match of one entry; a W/ prefix is allowed to precede it
 * (If-None-Match uses the weak comparison). */
static int not_modified(const chorus_http_request *req, const char *etag)
{
    const chorus_http_header *h = chorus_http_find_header(
        req->headers, req->num_headers, "If-None-Match");
    size_t n = strlen(etag);

    if (!h)
        return 0;
    if (h->value_len == 1 && h->value[0] == '*')
        return 1;
    for (size_t i = 0; i + n <= h->value_len; i++)
        if (memcmp(h->value + i, etag, n) == 0)
            return 1;
    return 0;
}

/* Status line and headers of a 200 or 304. Cache-Control: no-cache lets
 * browsers keep a copy but revalidate it each time: a broker upgrade must
 * reach pages at once (a stale chorus.js could speak an older protocol),
 * and a revalidation costs only a 304. A 304 carries no body and so no
 * Content-Length. */
static void reply_head(conn *c, int status, long long len, const char *type,
                       const char *etag, int keepalive)
{
    struct evbuffer *out = conn_output(c);

    if (status == 304)
        evbuffer_add_printf(out, "HTTP/1.1 304 Not Modified\r\n");
    else
        evbuffer_add_printf(out,
                            "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n"
                            "Content-Type: %s\r\n"
                            "X-Content-Type-Options: nosniff\r\n",
                            len, type);
    evbuffer_add_printf(out, "ETag: %s\r\nCache-Control: no-cache\r\n%s\r\n",
                        etag, keepalive ? "" : "Connection: close\r\n");
}

static void refuse_method(conn *c, int keepalive)
{
    http_respond_405(c, "GET, HEAD", keepalive);
}

/* A file under web_root, or HTTP_API_NO_ROUTE when there is none. */
static http_api_result serve_file(conn *c, const chorus_http_request *req,
                                  const char *root, const char *rel, int n,
                                  int keepalive)
{
    char full[2048], etag[64];
    struct stat st;
    int head, fd, status;

    if (snprintf(full, sizeof full, "%s%s%s", root, rel,
                 rel[n - 1] == '/' ? "index.html" : "") >= (int)sizeof full)
        return HTTP_API_NO_ROUTE;
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return HTTP_API_NO_ROUTE;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
        st.st_size > STATIC_MAX_FILE) {
        close(fd);
        return HTTP_API_NO_ROUTE;
    }
    if (!method_ok(req, &head)) {
        close(fd);
        refuse_method(c, keepalive);
        return HTTP_API_DONE;
    }
    /* Modification time and size, like common web servers: cheap, and it
     * changes whenever a deploy replaces the file. */
    snprintf(etag, sizeof etag, "\"%llx.%lx-%llx\"",
             (unsigned long long)st.st_mtim.tv_sec,
             (unsigned long)st.st_mtim.tv_nsec, (unsigned long long)st.st_size);
    status = not_modified(req, etag) ? 304 : 200;
    reply_head(c, status, (long long)st.st_size, mime_type(full), etag,
               keepalive);
    if (head || status == 304 || st.st_size == 0)
        close(fd);
    else /* takes fd */
        evbuffer_add_file(conn_output(c), fd, 0, st.st_size);
    if (!keepalive)
        conn_finish(c);
    return HTTP_API_DONE;
}

/* A built-in asset, or HTTP_API_NO_ROUTE when rel names none. */
static http_api_result serve_asset(conn *c, const chorus_http_request *req,
                                   const char *rel, int keepalive)
{
    const struct static_asset *a = static_assets;
    int head, status;

    if (strcmp(rel, "/") == 0)
        rel = "/index.html";
    while (a->path && strcmp(a->path, rel) != 0)
        a++;
    if (!a->path)
        return HTTP_API_NO_ROUTE;
    if (!method_ok(req, &head)) {
        refuse_method(c, keepalive);
        return HTTP_API_DONE;
    }
    status = not_modified(req, a->etag) ? 304 : 200;
    reply_head(c, status, (long long)a->len, mime_type(a->path), a->etag,
               keepalive);
    /* The data is static: reference it instead of copying it. */
    if (!head && status == 200)
        evbuffer_add_reference(conn_output(c), a->data, a->len, NULL, NULL);
    if (!keepalive)
        conn_finish(c);
    return HTTP_API_DONE;
}

http_api_result static_files_route(conn *c, const chorus_http_request *req,
                                   const char *path, size_t path_len,
                                   int keepalive)
{
    const char *root = c->srv->cfg->web_root;
    char rel[1024];
    int n = safe_path(path, path_len, rel, sizeof rel);

    if (n < 0)
        return HTTP_API_NO_ROUTE;
    /* web_root first, so a deployment can replace the demo page or pin its
     * own copy of chorus.js; the built-in files remain the fallback. */
    if (root && serve_file(c, req, root, rel, n, keepalive) == HTTP_API_DONE)
        return HTTP_API_DONE;
    return serve_asset(c, req, rel, keepalive);
}
