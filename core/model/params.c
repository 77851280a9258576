#include "params.h"

#include <stdio.h>
#include <stdlib.h>

int param_table_add(param_table *t, const char *name, int rows, int cols, bool decay)
{
    if (t->count == t->cap) {
        int cap = t->cap ? 2 * t->cap : 32;
        tensor_info *grown = realloc(t->tensors, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        t->tensors = grown;
        t->cap = cap;
    }
    tensor_info *info = &t->tensors[t->count];
    snprintf(info->name, sizeof info->name, "%s", name);
    info->offset = (t->total + 15) / 16 * 16;
    info->count = (size_t)rows * cols;
    info->rows = rows;
    info->cols = cols;
    info->decay = decay;
    info->frozen = false;
    t->total = info->offset + info->count;
    t->trainable = t->total;
    return t->count++;
}

int param_table_add_frozen(param_table *t, const char *name, int rows, int cols)
{
    size_t trainable = t->trainable;
    int i = param_table_add(t, name, rows, cols, false);
    if (i >= 0) {
        t->tensors[i].frozen = true;
        t->trainable = t->count > 1 && t->tensors[i - 1].frozen ? trainable : t->tensors[i].offset;
    }
    return i;
}

void param_table_free(param_table *t)
{
    free(t->tensors);
    *t = (param_table){0};
}
