#ifndef WANCP_PARAMS_H
#define WANCP_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * A table of named tensors laid out back to back in one flat float array. Parameters,
 * gradients and optimizer moments all use the same table, so weight sync, checkpoints and
 * the optimizer each see one contiguous buffer, and a tensor's views in the four buffers
 * share one offset.
 */
typedef struct tensor_info {
    char name[40];
    size_t offset; /* in floats from the start of the buffer */
    size_t count;
    int rows, cols;
    bool decay;    /* takes weight decay (matrices do; norm gains do not) */
    bool frozen;   /* state, not trained: never stepped or averaged (the compression bases) */
} tensor_info;

typedef struct param_table {
    tensor_info *tensors;
    int count, cap;
    size_t total;     /* floats in the buffer */
    size_t trainable; /* floats before the first frozen tensor (frozen ones come last) */
} param_table;

/* Appends a (rows, cols) tensor; returns its index, or -1 when out of memory. Offsets are
 * rounded up to 16 floats so every tensor starts 64-byte aligned. */
int param_table_add(param_table *t, const char *name, int rows, int cols, bool decay);

/* Appends a frozen tensor; after the first, only frozen tensors may follow. */
int param_table_add_frozen(param_table *t, const char *name, int rows, int cols);
void param_table_free(param_table *t);

#endif
