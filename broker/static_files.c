#include "static_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conn.h"
#include "http_route.h"
#include "server.h"

/* Files larger than this are not served from web_root. */
#define STATIC_MAX_FILE (64 * 1024 * 1024)

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

    for (size_t i = 0; dot && i < sizeof mime_types / sizeof mime_types[0];
         i++)
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
    return *head || (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0);
}

http_api_result static_files_route(conn *c, const chorus_http_request *req,
                                   const char *path, size_t path_len,
                                   int keepalive)
{
    const char *root = c->srv->cfg->web_root;
    char rel[1024], full[2048];
    struct stat st;
    int head, fd, n;

    if (!root)
        return HTTP_API_NO_ROUTE;
    n = safe_path(path, path_len, rel, sizeof rel);
    if (n < 0)
        return HTTP_API_NO_ROUTE;
    snprintf(full, sizeof full, "%s%s%s", root, rel,
             rel[n - 1] == '/' ? "index.html" : "");
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return HTTP_API_NO_ROUTE;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_FILE) {
        close(fd);
        return HTTP_API_NO_ROUTE;
    }
    if (!method_ok(req, &head)) {
        close(fd);
        http_respond(c, 405, "text/plain", "method not allowed\n", 19,
                     "Allow: GET, HEAD\r\n", keepalive);
        return HTTP_API_DONE;
    }
    {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_add_printf(out,
                            "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n"
                            "Content-Type: %s\r\n"
                            "Cache-Control: no-cache\r\n%s\r\n",
                            (long long)st.st_size, mime_type(full),
                            keepalive ? "" : "Connection: close\r\n");
        if (head || st.st_size == 0)
            close(fd);
        else
            evbuffer_add_file(out, fd, 0, st.st_size); /* takes fd */
    }
    if (!keepalive)
        conn_finish(c);
    return HTTP_API_DONE;
}
