/* Shared by the fuzz targets: an invariant check that aborts (libFuzzer
 * then saves the input as a crash), and the entry point's prototype. */
#ifndef CHORUS_FUZZ_H
#define CHORUS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(c)                                                 \
    do {                                                               \
        if (!(c)) {                                                    \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, \
                    __LINE__, #c);                                     \
            abort();                                                   \
        }                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
