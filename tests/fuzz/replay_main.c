/* Replays fuzz inputs without libFuzzer: each argument is a file or a
 * folder of files (a corpus), each file is passed once to the target's
 * LLVMFuzzerTestOneInput. A target reports a broken invariant by aborting,
 * so reaching the end means every input passed. Linked with each target
 * when CHORUS_FUZZ is off (tests/fuzz/CMakeLists.txt). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPLAY_FILE_MAX (4u << 20) /* larger than any corpus file */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one file. Returns 0, or -1 if it cannot be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (!f) {
        perror(path);
        return -1;
    }
    buf = malloc(REPLAY_FILE_MAX);
    if (!buf) {
        fclose(f);
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    n = fread(buf, 1, REPLAY_FILE_MAX, f);
    fclose(f);
    /* A copy of exactly n bytes, so ASan sees reads past the input. */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

/* Runs every regular file of a folder. Returns the count, or -1. */
static long replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    long count = 0;
    char path[4096];

    if (!d) {
        perror(dir);
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path) < 0) {
            closedir(d);
            return -1;
        }
        count++;
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    long total = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        n = S_ISDIR(st.st_mode) ? replay_dir(argv[i])
                                : (replay_file(argv[i]) < 0 ? -1 : 1);
        if (n < 0)
            return 1;
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no input given (empty corpus?)\n");
        return 1;
    }
    printf("replay: %ld inputs passed\n", total);
    return 0;
}
