/* chorus: command-line client of the Chorus broker.
 *
 *   chorus <command> [options] [arguments]
 *
 * main() finds the command in a table, parses the options shared by every
 * command (--url, --cacert, --token, --verbose, --help) plus the command's
 * own, and runs it. New commands only add a row to the table and a
 * function. Exit status: 0 success, 1 failure, 2 usage. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chorus_version.h"
#include "cli.h"

typedef struct cli_command {
    const char *name;
    const char *args;       /* synopsis of the positional arguments */
    const char *summary;    /* one line for "chorus --help" */
    const char *details;    /* extra paragraphs for "chorus NAME --help" */
    int min_pos, max_pos;   /* max_pos -1: no limit */
    const cli_option *opts; /* command-specific, NULL-name terminated */
    int (*run)(const cli_args *a);
} cli_command;

static const cli_option sub_opts[] = {
    {"since", 0, 1, "EPOCH:OFFSET",
     "start after this position (one topic only)"},
    {"resume", 0, 1, "FILE", "keep positions in FILE and reconnect by itself"},
    {"reconnect", 0, 0, NULL, "reconnect and resume after a lost connection"},
    {NULL, 0, 0, NULL, NULL},
};

static const cli_option history_opts[] = {
    {"since", 0, 1, "N", "only messages with an offset above N (default 0)"},
    {"limit", 0, 1, "M",
     "at most M messages per request (default: the broker's, 100)"},
    {"all", 0, 0, NULL,
     "page through the whole history (1000 per request by default)"},
    {NULL, 0, 0, NULL, NULL},
};

static const cli_command commands[] = {
    {"sub", "TOPIC...",
     "subscribe to topics and print each message as a JSON line",
     "Prints every `message` event, exactly as received, as one line of\n"
     "JSON on stdout: first the replayed ones (with --since or --resume),\n"
     "then live ones. Runs until interrupted (exit 0) or until the broker\n"
     "answers with an error (exit 1). Without --reconnect or --resume, a\n"
     "lost connection ends it with exit 1.\n"
     "\n"
     "The position of a topic is the broker's epoch and the offset of the\n"
     "last message printed. --since EPOCH:OFFSET (as in the `subscribed`\n"
     "reply; split at the last colon) replays what came after it; it takes\n"
     "exactly one TOPIC. When the broker cannot replay everything (history\n"
     "trimmed, or another epoch), sub warns on stderr\n"
     "  chorus: topic T: history gap (recovered: false)\n"
     "and goes on with what the broker still has.\n"
     "\n"
     "--reconnect: after a lost connection (broker restart, close 1001 or\n"
     "1013, network error) connect again with exponential backoff and\n"
     "jitter (100 ms doubling up to 5 s) and subscribe every topic with its\n"
     "position: nothing still in history is lost, no message is printed\n"
     "twice. Handshake refusals (HTTP 4xx), close codes 1002, 1003, 1007,\n"
     "1008, 1009 and error replies other than internal and rate_limited\n"
     "still end it with exit 1.\n"
     "\n"
     "--resume FILE: like --reconnect, and the positions are kept in FILE,\n"
     "a JSON object {\"TOPIC\": {\"epoch\": \"...\", \"offset\": N}, ...}\n"
     "written atomically (temporary file and rename) at most 100 ms after a\n"
     "message is printed and on exit (SIGINT, SIGTERM). A later run with\n"
     "the same FILE continues where this one stopped. A missing FILE\n"
     "starts fresh (live messages only); without TOPIC, every topic in FILE\n"
     "is subscribed; a position in FILE wins over --since; other topics in\n"
     "FILE are kept. After a crash (kill -9) up to 100 ms of messages may\n"
     "be printed again; never is one skipped.\n",
     0, -1, sub_opts, cli_sub},
    {"pub", "TOPIC DATA|-",
     "publish a message (or one per line of stdin with -)",
     "DATA is sent as JSON when it parses as JSON, else as a JSON string\n"
     "(hello -> \"hello\"). With -, each non-empty stdin line is published\n"
     "the same way, up to 1000 requests in flight. Waits until every\n"
     "message is acknowledged; stops at the first error reply. With\n"
     "--verbose, prints the offset of each published message.\n",
     2, 2, NULL, cli_pub},
    {"history", "TOPIC",
     "print a topic's stored messages (HTTP API) as JSON lines",
     "GET /api/history/TOPIC over HTTP(S): the address comes from --url\n"
     "(ws -> http, wss -> https, same host and port; a path before a final\n"
     "/ws is kept as prefix). Prints one line per message:\n"
     "  {\"topic\":..,\"offset\":..,\"ts\":..,\"data\":..}\n"
     "--since N is exclusive. With --all, requests follow one another\n"
     "(since = the last offset seen) up to the newest offset at the first\n"
     "answer. A non-200 answer is reported on stderr, exit 1.\n",
     1, 1, history_opts, cli_history},
    {"token", "", "print a client token signed with the broker's secret",
     cli_token_details, 0, 0, cli_token_opts, cli_token},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const cli_option common_opts[] = {
    {"url", 0, 1, "URL",
     "broker URL (default: $CHORUS_URL, else " CLI_DEFAULT_URL ")"},
    {"cacert", 0, 1, "FILE",
     "PEM CA certificates to verify wss:// (default: system store)"},
    {"token", 0, 1, "T", "bearer token (default: $CHORUS_TOKEN)"},
    {"verbose", 'v', 0, NULL, "say more"},
    {"help", 'h', 0, NULL, "show this help"},
    {NULL, 0, 0, NULL, NULL},
};

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("chorus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *cli_opt(const cli_args *a, const char *name)
{
    for (int i = 0; i < a->nopts; i++)
        if (strcmp(a->opt_name[i], name) == 0)
            return a->opt_value[i];
    return NULL;
}

static void print_opts(FILE *f, const cli_option *o)
{
    for (; o && o->name; o++) {
        char left[64];
        int n = 0;
        if (o->short_name)
            n = snprintf(left, sizeof left, "-%c, ", o->short_name);
        snprintf(left + n, sizeof left - (size_t)n, "--%s%s%s", o->name,
                 o->has_arg ? " " : "", o->has_arg ? o->arg_name : "");
        fprintf(f, "  %-22s %s\n", left, o->help);
    }
}

static void usage_main(FILE *f)
{
    fprintf(f, "usage: chorus <command> [options] [arguments]\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions of every command:\n");
    print_opts(f, common_opts);
    fprintf(
        f,
        "\nRun 'chorus <command> --help' for details, 'chorus --version' for\n"
        "the version.\n");
}

static void usage_command(FILE *f, const cli_command *cmd)
{
    fprintf(f, "usage: chorus %s [options] %s\n\n%s\nOptions:\n", cmd->name,
            cmd->args, cmd->details);
    print_opts(f, common_opts);
    print_opts(f, cmd->opts);
}

static const cli_option *find_long(const cli_command *cmd, const char *name,
                                   size_t len)
{
    const cli_option *sets[2] = {common_opts, cmd->opts};
    for (int s = 0; s < 2; s++)
        for (const cli_option *o = sets[s]; o && o->name; o++)
            if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                return o;
    return NULL;
}

static const cli_option *find_short(const cli_command *cmd, char c)
{
    const cli_option *sets[2] = {common_opts, cmd->opts};
    for (int s = 0; s < 2; s++)
        for (const cli_option *o = sets[s]; o && o->name; o++)
            if (o->short_name && o->short_name == c)
                return o;
    return NULL;
}

/* Records one option. Returns 1 for --help, 0 on success, -1 on error. */
static int set_opt(cli_args *a, const cli_option *o, const char *value)
{
    if (strcmp(o->name, "help") == 0)
        return 1;
    if (strcmp(o->name, "url") == 0)
        a->url = value;
    else if (strcmp(o->name, "cacert") == 0)
        a->cacert = value;
    else if (strcmp(o->name, "token") == 0)
        a->token = value;
    else if (strcmp(o->name, "verbose") == 0)
        a->verbose = 1;
    else if (a->nopts < CLI_MAX_OPTS) {
        a->opt_name[a->nopts] = o->name;
        a->opt_value[a->nopts++] = value ? value : "";
    } else
        return -1;
    return 0;
}

/* Options may come anywhere before "--". A lone "-" and negative numbers
 * ("-5") are positional, so `chorus pub t -1` publishes -1. */
static int parse_args(const cli_command *cmd, int argc, char **argv,
                      cli_args *a)
{
    int dashdash = 0;
    a->pos = argv; /* positional ones are compacted in place */
    for (int i = 0; i < argc; i++) {
        char *arg = argv[i];
        if (dashdash || arg[0] != '-' || arg[1] == '\0' ||
            (arg[1] >= '0' && arg[1] <= '9') || arg[1] == '.') {
            a->pos[a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            dashdash = 1;
            continue;
        }
        const cli_option *o;
        const char *value = NULL;
        if (arg[1] == '-') {
            const char *eq = strchr(arg + 2, '=');
            size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
            o = find_long(cmd, arg + 2, len);
            if (o && eq) {
                if (!o->has_arg) {
                    cli_error("option --%s takes no value", o->name);
                    return -1;
                }
                value = eq + 1;
            }
        } else {
            o = arg[2] == '\0' ? find_short(cmd, arg[1]) : NULL;
        }
        if (!o) {
            cli_error("unknown option %s", arg);
            return -1;
        }
        if (o->has_arg && !value) {
            if (i + 1 >= argc) {
                cli_error("option %s needs a value", arg);
                return -1;
            }
            value = argv[++i];
        }
        int r = set_opt(a, o, value);
        if (r != 0)
            return r;
    }
    return 0;
}

/* The command called name, or NULL. */
static const cli_command *find_command(const char *name)
{
    const cli_command *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            cmd = &commands[i];
    return cmd;
}

/* The URL and token not given as options: from CHORUS_URL and
 * CHORUS_TOKEN, else the default URL and no token (an empty one is
 * none). */
static void take_env_defaults(cli_args *a)
{
    if (!a->url)
        a->url = getenv("CHORUS_URL");
    if (!a->url || !*a->url)
        a->url = CLI_DEFAULT_URL;
    if (!a->token)
        a->token = getenv("CHORUS_TOKEN");
    if (a->token && !*a->token)
        a->token = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        if (CHORUS_GIT_COMMIT[0])
            printf("chorus %s (git %s)\n", CHORUS_VERSION, CHORUS_GIT_COMMIT);
        else
            printf("chorus %s\n", CHORUS_VERSION);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_main(stdout);
        return CLI_OK;
    }
    const cli_command *cmd = find_command(argv[1]);
    if (!cmd) {
        cli_error("unknown command '%s'", argv[1]);
        usage_main(stderr);
        return CLI_USAGE;
    }

    cli_args a;
    memset(&a, 0, sizeof a);
    int r = parse_args(cmd, argc - 2, argv + 2, &a);
    if (r == 1) {
        usage_command(stdout, cmd);
        return CLI_OK;
    }
    if (r == 0 && (a.npos < cmd->min_pos ||
                   (cmd->max_pos >= 0 && a.npos > cmd->max_pos))) {
        cli_error("%s: wrong number of arguments", cmd->name);
        r = -1;
    }
    if (r < 0) {
        usage_command(stderr, cmd);
        return CLI_USAGE;
    }
    take_env_defaults(&a);

    /* A write to a socket the broker has closed must be an error, not a
     * silent death. */
    signal(SIGPIPE, SIG_IGN);
    return cmd->run(&a);
}
