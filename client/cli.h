/* Shared declarations of the chorus CLI: parsed arguments and commands.
 * client/chorus.c owns main(), the command table and option parsing; each
 * command lives in its own files (cli_pubsub.c: pub; cli_resume.c and
 * cli_resume_state.c: sub; cli_history.c and cli_history_json.c:
 * history). */
#ifndef CHORUS_CLI_H
#define CHORUS_CLI_H

#define CLI_DEFAULT_URL "ws://127.0.0.1:8080/ws"

/* Exit statuses of every command. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* An option a command accepts besides the common ones. */
typedef struct cli_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 when none */
    int has_arg;
    const char *arg_name; /* for the usage text */
    const char *help;
} cli_option;

#define CLI_MAX_OPTS 16

typedef struct cli_args {
    const char *url;    /* --url, else $CHORUS_URL, else CLI_DEFAULT_URL */
    const char *cacert; /* --cacert or NULL */
    const char *token;  /* --token, else $CHORUS_TOKEN, else NULL */
    int verbose;        /* -v / --verbose */
    int npos;           /* positional arguments */
    char **pos;
    /* command-specific options that were given: name -> value ("" for
     * flags); read them with cli_opt() */
    int nopts;
    const char *opt_name[CLI_MAX_OPTS];
    const char *opt_value[CLI_MAX_OPTS];
} cli_args;

/* Value of a command-specific option, or NULL when not given. */
const char *cli_opt(const cli_args *a, const char *name);

/* Prints "chorus: <message>" and a newline on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Commands: return an exit status (CLI_OK, CLI_FAIL). */
int cli_sub(const cli_args *a);
int cli_pub(const cli_args *a);
/* cli_token.c: its options and help text, for the command table. */
int cli_token(const cli_args *a);
extern const cli_option cli_token_opts[];
extern const char cli_token_details[];
int cli_history(const cli_args *a);

#endif
