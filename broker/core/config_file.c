/* The configuration file reader: "key = value" lines, '#' comments, an
 * optional UTF-8 byte order mark. Splits the text into lines and each line
 * into key and value, and hands them to config_set(); all or nothing. */
#include "config_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f' ||
           ch == '\n';
}

static char *trim(char *s)
{
    char *e;

    while (is_space(*s))
        s++;
    e = s + strlen(s);
    while (e > s && is_space(e[-1]))
        *--e = '\0';
    return s;
}

/* Cuts a trailing comment: '#' at the start of the value or after
 * whitespace. */
static void cut_comment(char *v)
{
    for (char *p = v; *p; p++) {
        if (*p == '#' && (p == v || is_space(p[-1]))) {
            *p = '\0';
            return;
        }
    }
}

/* Splits one line into key and value (both trimmed, value unquoted and
 * without comment). Returns 1 for a key/value line, 0 for a blank or
 * comment line, -1 with a message in err. */
static int split_line(char *line, char **key, char **value, char *err,
                      size_t errlen)
{
    char *s = trim(line), *eq, *v;

    if (*s == '\0' || *s == '#')
        return 0;
    eq = strchr(s, '=');
    if (!eq) {
        config_set_err(err, errlen, "expected \"key = value\", found no '='");
        return -1;
    }
    *eq = '\0';
    *key = trim(s);
    if (**key == '\0') {
        config_set_err(err, errlen,
                       "expected \"key = value\", found no key "
                       "before '='");
        return -1;
    }
    v = trim(eq + 1);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close) {
            config_set_err(err, errlen, "%s: missing closing '\"'", *key);
            return -1;
        }
        *close = '\0';
        char *rest = trim(close + 1);
        if (*rest != '\0' && *rest != '#') {
            config_set_err(err, errlen,
                           "%s: unexpected text after quoted value", *key);
            return -1;
        }
        *value = v + 1;
        return 1;
    }
    cut_comment(v);
    *value = trim(v);
    return 1;
}

/* The engine checks of config_validate, reported at the line that set
 * the offending key (or the engine line) of this file. */
static int check_engine_keys(const config *c, const unsigned *seen,
                             const char *path, char *err, size_t errlen)
{
    char msg[256];
    const char *key = config_engine_conflict(c, msg, sizeof msg);
    unsigned line;

    if (!key)
        return 0;
    line = seen[config_find_key(key) - config_keys];
    if (!line)
        line = seen[config_find_key("engine") - config_keys];
    if (line)
        config_set_err(err, errlen, "%s:%u: %s", path, line, msg);
    else
        config_set_err(err, errlen, "%s: %s", path, msg);
    return -1;
}

/* Applies one line (NUL-terminated, its newline included or not) to c;
 * seen[] holds the line each key was first set on. Returns 0, or -1 with
 * a message (without name:line) in msg. */
static int apply_line(config *c, char *line, unsigned lineno, unsigned seen[],
                      char *msg, size_t msglen)
{
    char *key, *value;
    int rc = split_line(line, &key, &value, msg, msglen);

    if (rc <= 0)
        return rc;
    const key_def *k = config_find_key(key);
    size_t idx = k ? (size_t)(k - config_keys) : 0;
    if (k && seen[idx] && k->type != T_REDIS_URL) { /* redis_url repeats */
        config_set_err(msg, msglen, "%s: duplicate key (first set on line %u)",
                       key, seen[idx]);
        return -1;
    }
    if (k)
        seen[idx] = lineno;
    return config_set(c, key, value, msg, msglen);
}

/* Parses buf[0..len) line by line into c. Reports "name:line: message". */
static int load_lines(config *c, const char *buf, size_t len, const char *name,
                      char *err, size_t errlen)
{
    char *line = malloc(len + 1), msg[512];
    unsigned lineno = 0, *seen = calloc(config_nkeys, sizeof *seen);
    size_t off = 0;
    int rc = 0;

    if (!line || !seen) {
        config_set_err(err, errlen, "%s: out of memory", name);
        free(line);
        free(seen);
        return -1;
    }
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        off = 3; /* UTF-8 byte order mark */
    while (off < len && rc >= 0) {
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (buf + off)) + 1 : len - off;
        lineno++;
        if (memchr(buf + off, '\0', n)) {
            config_set_err(msg, sizeof msg, "line contains a NUL byte");
            rc = -1;
        } else {
            memcpy(line, buf + off, n);
            line[n] = '\0';
            rc = apply_line(c, line, lineno, seen, msg, sizeof msg);
        }
        if (rc < 0)
            config_set_err(err, errlen, "%s:%u: %s", name, lineno, msg);
        off += n;
    }
    if (rc >= 0)
        rc = check_engine_keys(c, seen, name, err, errlen);
    free(seen);
    free(line);
    return rc < 0 ? -1 : 0;
}

/* Parses into a copy and keeps it only if the whole text is valid, so bad
 * text leaves c untouched. */
int config_load_buffer(config *c, const char *buf, size_t len, const char *name,
                       char *err, size_t errlen)
{
    config tmp;

    if (config_copy(&tmp, c)) {
        config_set_err(err, errlen, "%s: out of memory", name);
        return -1;
    }
    if (load_lines(&tmp, buf, len, name, err, errlen) < 0) {
        config_free(&tmp);
        return -1;
    }
    config_free(c);
    *c = tmp;
    return 0;
}

/* Reads the whole file (at most CONFIG_FILE_MAX bytes) into *out. */
static int read_file(const char *path, char **out, size_t *out_len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    if (!f) {
        config_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        config_set_err(err, errlen, "%s: out of memory", path);
        fclose(f);
        return -1;
    }
    len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        config_set_err(err, errlen, "%s: %s", path, strerror(errno));
        len = (size_t)-1;
    } else if (len > CONFIG_FILE_MAX) {
        config_set_err(err, errlen,
                       "%s: larger than %u bytes, not a configuration file",
                       path, CONFIG_FILE_MAX);
        len = (size_t)-1;
    }
    fclose(f);
    if (len == (size_t)-1) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int config_load_file(config *c, const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int rc;

    if (read_file(path, &buf, &len, err, errlen) < 0)
        return -1;
    rc = config_load_buffer(c, buf, len, path, err, errlen);
    free(buf);
    return rc;
}
