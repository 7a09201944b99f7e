/* HTTP/1.1 message head parser in the style of picohttpparser: pure, no
 * allocation, fields point into the caller's buffer. */
#ifndef CHORUS_HTTP_PARSE_H
#define CHORUS_HTTP_PARSE_H

#include <stddef.h>

#define CHORUS_HTTP_MAX_HEADERS 64

enum {
    CHORUS_HTTP_INCOMPLETE = -2, /* need more bytes */
    CHORUS_HTTP_MALFORMED = -1,
    CHORUS_HTTP_TOO_LARGE = -3, /* a limit below was exceeded */
};

typedef struct chorus_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing blanks stripped */
    size_t value_len;
} chorus_http_header;

typedef struct chorus_http_limits {
    size_t max_line;    /* request/status line and each header line */
    size_t max_headers; /* at most CHORUS_HTTP_MAX_HEADERS */
    size_t max_head;    /* whole head including the blank line */
} chorus_http_limits;

typedef struct chorus_http_request {
    const char *method;
    size_t method_len;
    const char *target; /* path and query, as sent */
    size_t target_len;
    int minor_version; /* HTTP/1.x */
    chorus_http_header headers[CHORUS_HTTP_MAX_HEADERS];
    size_t num_headers;
} chorus_http_request;

typedef struct chorus_http_response {
    int minor_version;
    int status;
    const char *reason;
    size_t reason_len;
    chorus_http_header headers[CHORUS_HTTP_MAX_HEADERS];
    size_t num_headers;
} chorus_http_response;

/* Parses a request head from buf[0..len). Returns the head's length in
 * bytes (> 0) when complete, or one of the negative codes above. Lines end
 * in CRLF (a bare LF is accepted); obsolete line folding is refused. */
int chorus_http_parse_request(const char *buf, size_t len,
                              const chorus_http_limits *lim,
                              chorus_http_request *req);

/* Same for a response head (the client side of the upgrade). */
int chorus_http_parse_response(const char *buf, size_t len,
                               const chorus_http_limits *lim,
                               chorus_http_response *res);

/* First header of that name (case-insensitive), or NULL. */
const chorus_http_header *
chorus_http_find_header(const chorus_http_header *headers, size_t n,
                        const char *name);

/* Number of headers of that name: duplicates of some headers are errors. */
size_t chorus_http_count_header(const chorus_http_header *headers, size_t n,
                                const char *name);

/* 1 if a comma-separated header value holds token (case-insensitive). */
int chorus_http_has_token(const char *value, size_t len, const char *token);

/* Splits target into path and query (query excludes '?'; NULL if none). */
void chorus_http_split_target(const char *target, size_t len, const char **path,
                              size_t *path_len, const char **query,
                              size_t *query_len);

/* Finds parameter name in a query string and percent-decodes its value
 * ('+' as space) into out (NUL-terminated). Returns the decoded length,
 * -1 when absent, -2 when malformed or longer than out_size - 1. */
int chorus_http_query_param(const char *query, size_t len, const char *name,
                            char *out, size_t out_size);

/* Percent-decodes src into out (NUL-terminated). Returns the decoded
 * length, or -1 on a bad escape, an encoded NUL, or overflow. */
int chorus_http_percent_decode(const char *src, size_t len, char *out,
                               size_t out_size);

#endif
