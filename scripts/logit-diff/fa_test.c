#include "ggml.h"
#include "ggml-cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// fa_test D NKEYS qfile kfile(f16 cache) vfile(f16 cache) qrow_offset_floats out
int main(int argc, char **argv) {
    int D = atoi(argv[1]), NK = atoi(argv[2]);
    struct ggml_init_params ip = { 64*1024*1024, NULL, false };
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, 1, 1, 1);
    struct ggml_tensor *k = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, D, NK, 1, 1);
    struct ggml_tensor *v = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, D, NK, 1, 1);
    FILE *f = fopen(argv[3], "rb"); fseek(f, atol(argv[6])*4, SEEK_SET); fread(q->data, 4, D, f); fclose(f);
    f = fopen(argv[4], "rb"); fread(k->data, 2, D*NK, f); fclose(f);
    f = fopen(argv[5], "rb"); fread(v->data, 2, D*NK, f); fclose(f);
    struct ggml_tensor *o = ggml_flash_attn_ext(ctx, q, k, v, NULL, 1.0f, 0.0f, 0.0f);
    ggml_flash_attn_ext_set_prec(o, GGML_PREC_F32);
    struct ggml_cgraph *g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, o);
    ggml_graph_compute_with_ctx(ctx, g, 1);
    f = fopen(argv[7], "wb"); fwrite(o->data, 4, D, f); fclose(f);
    return 0;
}
