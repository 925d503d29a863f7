/* Run a tilewise model library from C and print its top class.
 *
 *   tilewise build model.onnx -o model.so --header model.h
 *   cc -O2 -std=c11 examples/classify.c -I. -DMODEL_HEADER='"model.h"' ./model.so \
 *      -Wl,-rpath,'$ORIGIN' -o classify
 *   ./classify input.bin        # the first input as raw bytes (e.g. numpy's x.tofile)
 *   ./classify                  # or a fixed ramp as the input
 *
 * The header (docs/c_abi.md) gives every size as a constant: the program allocates the
 * inputs, the outputs and the workspace, calls tilewise_run once, and prints the index and
 * value of the largest element of its output. Models of one float32 input and one float32
 * output only: the checks below refuse others at compile time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef MODEL_HEADER
#define MODEL_HEADER "model.h"
#endif
#include MODEL_HEADER

_Static_assert(TILEWISE_NUM_INPUTS == 1 && TILEWISE_NUM_OUTPUTS == 1,
               "this example runs models of one input and one output");
_Static_assert(_Generic((TILEWISE_INPUT0_CTYPE)0, float: 1, default: 0), "this example feeds a float32 input");
_Static_assert(_Generic((TILEWISE_OUTPUT0_CTYPE)0, float: 1, default: 0), "this example reads a float32 output");

static int read_input(const char *path, void *dst) {
    FILE *fh = fopen(path, "rb");
    if (!fh) {
        perror(path);
        return -1;
    }
    size_t n = fread(dst, 1, TILEWISE_INPUT0_BYTES, fh);
    int extra = fgetc(fh) != EOF;
    fclose(fh);
    if (n != TILEWISE_INPUT0_BYTES || extra) {
        fprintf(stderr, "%s: expected %d bytes (%s, %s), got %s\n", path, TILEWISE_INPUT0_BYTES,
                TILEWISE_INPUT0_NAME, TILEWISE_INPUT0_DTYPE, extra ? "more" : "fewer");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    float *x = malloc(TILEWISE_INPUT0_BYTES);
    float *y = malloc(TILEWISE_OUTPUT0_BYTES);
    /* aligned_alloc wants a size that is a multiple of the alignment; the plan's size is one */
    size_t ws_bytes = TILEWISE_WORKSPACE_BYTES ? TILEWISE_WORKSPACE_BYTES : TILEWISE_WORKSPACE_ALIGN;
    void *ws = aligned_alloc(TILEWISE_WORKSPACE_ALIGN, ws_bytes);
    if (!x || !y || !ws) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (argc > 1) {
        if (read_input(argv[1], x) != 0)
            return 1;
    } else {
        for (long i = 0; i < TILEWISE_INPUT0_SIZE; i++)
            x[i] = (float)(i % 17) / 8.0f - 1.0f;
    }
    void *io[] = {x, y};                 /* the inputs, then the outputs */
    int32_t rc = tilewise_run(io, TILEWISE_PARAMS, ws);
    if (rc != 0) {
        fprintf(stderr, "tilewise_run failed with code %d\n", (int)rc);
        return 1;
    }
    long best = 0;
    for (long i = 1; i < TILEWISE_OUTPUT0_SIZE; i++)
        if (y[i] > y[best])
            best = i;
    printf("top class: %ld (%s = %g)\n", best, TILEWISE_OUTPUT0_NAME, y[best]);
    free(x);
    free(y);
    free(ws);
    return 0;
}
