/* Printing a page of the history answer (cli_history_json.c), for
 * cli_history.c. */
#ifndef CHORUS_CLI_HISTORY_JSON_H
#define CHORUS_CLI_HISTORY_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct hist_page {
    const char *topic_json; /* the topic as a JSON string */
    int count;              /* messages printed */
    uint64_t last;          /* offset of the last one; starts at since */
    int write_failed;
} hist_page;

/* Prints the "messages" of the JSON object body as lines
 * {"topic":..,"offset":..,"ts":..,"data":..}. Returns -1 when a message
 * lacks offset or data, or offsets do not increase past pg->last. */
int hist_print_page(const char *body, size_t len, hist_page *pg);

#endif
