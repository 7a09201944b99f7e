/* chorusd: start-up order, command line, exit status. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "chorus_version.h"
#include "config.h"
#include "config_ref.h"
#include "log.h"
#include "loops_run.h"
#include "reload.h"
#include "store.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: chorusd [-c FILE] [--listen HOST:PORT] "
               "[--log-level LEVEL] [--check-config | --new-epochs]\n"
               "  -c, --config FILE     read settings from FILE (key = value)\n"
               "  -l, --listen ADDR     listen address, e.g. 127.0.0.1:8080\n"
               "  -L, --log-level LVL   error, warn, info or debug\n"
               "  -t, --check-config    check the settings and exit: 0 when "
               "valid,\n"
               "                        1 with \"file:line: message\" when "
               "not;\n"
               "                        opens no port and no database\n"
               "      --new-epochs      give the stopped broker's database "
               "and every\n"
               "                        topic a new epoch (after restoring "
               "a copy), exit\n"
               "  -V, --version         print the version and exit\n"
               "  -h, --help            this text\n"
               "Without -c, chorusd runs on its built-in defaults; see "
               "broker.conf.example.\n");
}

static void print_version(void)
{
    if (CHORUS_GIT_COMMIT[0])
        printf("chorusd %s (git %s)\n", CHORUS_VERSION, CHORUS_GIT_COMMIT);
    else
        printf("chorusd %s\n", CHORUS_VERSION);
}

/* chorusd --new-epochs: the store's offline epoch change, then exit. */
static int run_new_epochs(config *cfg)
{
    char msg[1024];
    int rc = store_new_epochs(cfg, msg, sizeof msg);

    if (rc == STORE_OK)
        printf("chorusd: %s\n", msg);
    else
        fprintf(stderr, "chorusd: --new-epochs: %s\n", msg);
    config_ref_release(cfg);
    return rc == STORE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"log-level", required_argument, NULL, 'L'},
        {"check-config", no_argument, NULL, 't'},
        {"new-epochs", no_argument, NULL, 'E'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    config_source src = {NULL, NULL, NULL};
    char err[512];
    config *cfg;
    int opt, check_only = 0, new_epochs = 0;

    while ((opt = getopt_long(argc, argv, "c:l:L:tVh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': src.path = optarg; break;
        case 'l': src.listen = optarg; break;
        case 'L': src.log_level = optarg; break;
        case 't': check_only = 1; break;
        case 'E': new_epochs = 1; break;
        case 'V': print_version(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || (check_only && new_epochs)) {
        usage(stderr);
        return 2;
    }
    cfg = config_build(&src, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "chorusd: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("chorusd: %s: settings are valid\n",
               src.path ? src.path : "built-in defaults");
        config_ref_release(cfg);
        return 0;
    }
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit must fail the write (EFBIG), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    if (new_epochs)
        return run_new_epochs(cfg);
    if (!cfg->history) /* config_resolve_threads: one loop */
        log_info("history = off: running one event loop");
    config_fit_fd_limit(cfg);
    /* src lives on this stack for as long as the loops run. */
    return loops_run(cfg, &src);
}
