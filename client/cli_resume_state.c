/* chorus sub --resume FILE: the positions file. FILE is a JSON object,
 * {"<topic>": {"epoch": "...", "offset": N}, ...}; topics this run does
 * not subscribe to are kept as they are. It only ever holds positions that
 * were reached, written atomically (temporary file, fsync, rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_resume.h"

int sub_set_epoch(sub_topic *t, const char *epoch)
{
    char *e = strdup(epoch);
    if (!e)
        return -1;
    free(t->epoch);
    t->epoch = e;
    return 0;
}

/* Loads FILE: a missing file is a fresh start; anything unreadable or not
 * of the expected shape is an error, so that a typo never silently resets
 * the positions. */
int sub_state_load(sub_ctx *s)
{
    json_error_t jerr;
    s->state = json_load_file(s->state_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!s->state) {
        if (access(s->state_path, F_OK) != 0 && errno == ENOENT) {
            s->state = json_object();
            return s->state ? 0 : -1;
        }
        cli_error("%s: %s (line %d)", s->state_path, jerr.text, jerr.line);
        return -1;
    }
    if (!json_is_object(s->state)) {
        cli_error("%s: not a JSON object", s->state_path);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(s->state, key, v)
    {
        json_t *e = json_object_get(v, "epoch");
        json_t *o = json_object_get(v, "offset");
        if (!json_is_string(e) || !json_is_integer(o) ||
            json_integer_value(o) < 0) {
            cli_error("%s: topic %s: want {\"epoch\": \"...\", "
                      "\"offset\": N}",
                      s->state_path, key);
            return -1;
        }
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Copies every known position into s->state (which keeps other topics). */
static int positions_to_state(sub_ctx *s)
{
    for (int i = 0; i < s->ntopics; i++) {
        sub_topic *t = &s->topics[i];
        if (!t->epoch)
            continue;
        json_t *v = json_pack("{s:s, s:I}", "epoch", t->epoch, "offset",
                              (json_int_t)t->last);
        if (!v || json_object_set_new(s->state, t->name, v) < 0)
            return -1;
    }
    return 0;
}

/* Writes text and a newline to path atomically: temporary file, fsync,
 * rename. Returns 0, 1 on failure with the errno value in *err, -1 when
 * out of memory. */
static int replace_file(const char *path, const char *text, int *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp)
        return -1;
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = fd >= 0 && write_all(fd, text, strlen(text)) == 0 &&
             write_all(fd, "\n", 1) == 0 && fsync(fd) == 0;
    *err = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = 0;
        *err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        *err = errno;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? 0 : 1;
}

/* Makes a rename in path's directory durable (best effort). */
static void sync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
}

/* Writes every known position: temporary file, fsync, rename, fsync of
 * the directory. */
int sub_state_save(sub_ctx *s)
{
    if (!s->state_path || !s->dirty)
        return 0;
    char *text = positions_to_state(s) == 0
                     ? json_dumps(s->state, JSON_INDENT(1) | JSON_SORT_KEYS)
                     : NULL;
    int err = 0;
    int r = text ? replace_file(s->state_path, text, &err) : -1;
    free(text);
    if (r < 0) {
        cli_error("cannot save %s: out of memory", s->state_path);
        return -1;
    }
    if (r > 0) {
        if (!s->save_failed)
            cli_error("cannot save %s: %s", s->state_path, strerror(err));
        s->save_failed = 1;
        return -1;
    }
    sync_parent_dir(s->state_path);
    if (s->save_failed)
        cli_error("saved %s again", s->state_path);
    s->save_failed = 0;
    s->dirty = 0;
    return 0;
}

void sub_save_cb(evutil_socket_t fd, short what, void *arg)
{
    sub_ctx *s = arg;
    (void)fd;
    (void)what;
    sub_state_save(s);
    if (s->dirty) { /* failed: try again later */
        struct timeval tv = sub_tv_ms(1000);
        evtimer_add(s->save_timer, &tv);
    }
}

void sub_mark_dirty(sub_ctx *s)
{
    if (!s->state_path)
        return;
    s->dirty = 1;
    if (!evtimer_pending(s->save_timer, NULL)) {
        struct timeval tv = sub_tv_ms(SAVE_EVERY_MS);
        evtimer_add(s->save_timer, &tv);
    }
}
