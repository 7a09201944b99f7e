/* chorus token: prints an HS256 client token for a broker whose
 * auth_secret is known, so that auth can be tried in a minute. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "chorus/jwt.h"
#include "cli.h"

const cli_option cli_token_opts[] = {
    {"secret", 0, 1, "S", "the broker's auth_secret (default: $CHORUS_SECRET)"},
    {"sub", 0, 1, "ID", "client id, the token's \"sub\" (required)"},
    {"subscribe", 0, 1, "PATTERN", "may subscribe to PATTERN (repeatable)"},
    {"publish", 0, 1, "PATTERN", "may publish to PATTERN (repeatable)"},
    {"ttl", 0, 1, "DURATION", "lifetime: 30s, 5m, 1h, 7d (default 1h)"},
    {NULL, 0, 0, NULL, NULL},
};

const char cli_token_details[] =
    "Prints a JSON Web Token (HS256) signed with the broker's auth_secret,\n"
    "with the claims sub, iat, exp, subscribe and publish. A PATTERN is a\n"
    "topic, a prefix ending in * (chat.*), or * for every topic; without\n"
    "--subscribe or --publish the token grants neither. Pass it to the\n"
    "broker with --token (or $CHORUS_TOKEN), or as ?token= in a URL.\n"
    "Prefer $CHORUS_SECRET to --secret: arguments are visible to other\n"
    "users of the machine.\n";

/* "30s", "5m", "1h", "7d", or plain seconds. Returns seconds, or -1. */
static long long parse_ttl(const char *s)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || n <= 0 || s[0] == '-' || s[0] == '+')
        return -1;
    long long mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 'd')
        mul = 86400, end++;
    if (*end != '\0' || n > INT32_MAX / mul)
        return -1;
    return n * mul;
}

/* Every value given for a repeatable option, as a JSON array. */
static json_t *patterns(const cli_args *a, const char *name)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < a->nopts; i++) {
        if (strcmp(a->opt_name[i], name) != 0)
            continue;
        if (a->opt_value[i][0] == '\0') {
            cli_error("token: --%s needs a non-empty pattern", name);
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, json_string(a->opt_value[i]));
    }
    return arr;
}

int cli_token(const cli_args *a)
{
    const char *secret = cli_opt(a, "secret");
    const char *sub = cli_opt(a, "sub");
    const char *ttl_s = cli_opt(a, "ttl");
    if (!secret)
        secret = getenv("CHORUS_SECRET");
    if (!secret || !*secret) {
        cli_error("token: --secret or $CHORUS_SECRET is required");
        return CLI_USAGE;
    }
    if (!sub || !*sub) {
        cli_error("token: --sub is required");
        return CLI_USAGE;
    }
    long long ttl = parse_ttl(ttl_s ? ttl_s : "1h");
    if (ttl < 0) {
        cli_error("token: bad --ttl '%s' (examples: 30s, 5m, 1h, 7d)", ttl_s);
        return CLI_USAGE;
    }
    json_t *subscribe = patterns(a, "subscribe");
    json_t *publish = patterns(a, "publish");
    if (!subscribe || !publish) {
        json_decref(subscribe);
        json_decref(publish);
        return CLI_USAGE;
    }
    long long now = (long long)time(NULL);
    json_t *claims = json_pack("{s:s, s:I, s:I, s:o, s:o}", "sub", sub, "iat",
                               (json_int_t)now, "exp", (json_int_t)(now + ttl),
                               "subscribe", subscribe, "publish", publish);
    char *tok = claims ? chorus_jwt_sign(secret, strlen(secret), claims) : NULL;
    json_decref(claims);
    if (!tok) {
        cli_error("token: cannot sign the token");
        return CLI_FAIL;
    }
    printf("%s\n", tok);
    free(tok);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}
