// batch_logits MODEL TOKENS.txt OUT.bin [fa=on|off] [kv=f16|f32]: decode the ids (one per line) in ONE batch, write all logits (f32).
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
static int g_step = -1;
static bool cb(struct ggml_tensor *t, bool ask, void *u) {
    (void)u;
    if (ask) return true;
    if ((t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16) || !ggml_is_contiguous(t)) return true;
    char p[300]; if (g_step >= 0 && getenv("DUMP")) snprintf(p, sizeof p, "dseq/%d/%s.bin", g_step, t->name); else { static int k = 0; snprintf(p, sizeof p, "dump2/%04d_%s_%s.bin", k++, t->name, ggml_op_desc(t)); }
    FILE *f = fopen(p, "wb"); if (f) { fwrite(t->data, 1, ggml_nbytes(t), f); fclose(f); }
    return true;
}
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l; (void)t; (void)u; }
int main(int argc, char **argv) {
    llama_log_set(quiet, NULL);
    llama_backend_init();
    int fa = argc > 4 && !strcmp(argv[4], "off") ? 0 : 1;
    int f32 = argc > 5 && !strcmp(argv[5], "f32");
    struct llama_model_params mp = llama_model_default_params();
    mp.use_extra_bufts = false;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    FILE *f = fopen(argv[2], "r"); int toks[8192]; int n = 0;
    while (n < 8192 && fscanf(f, "%d", &toks[n]) == 1) n++;
    fclose(f);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n; cp.n_batch = n; cp.n_ubatch = n; cp.n_threads = getenv("NT") ? atoi(getenv("NT")) : 2; cp.n_threads_batch = cp.n_threads;
    cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (f32) { cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32; }
    if (getenv("DUMP")) { cp.cb_eval = cb; cp.cb_eval_user_data = NULL; }
    struct llama_context *ctx = llama_init_from_model(m, cp);
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) { b.token[i] = toks[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1; }
    b.n_tokens = n;
    if (getenv("SEQ")) {
        for (int i = 0; i < n; i++) {
            char d[64]; snprintf(d, sizeof d, "mkdir -p dseq/%d", i); system(d);
            g_step = i;
            struct llama_batch one = llama_batch_get_one(&toks[i], 1);
            if (llama_decode(ctx, one)) { fprintf(stderr, "decode failed\n"); return 1; }
            static FILE *so = NULL; if (!so) so = fopen(argv[3], "wb");
            fwrite(llama_get_logits_ith(ctx, -1), 4, llama_vocab_n_tokens(llama_model_get_vocab(m)), so);
            if (i == n - 1) fclose(so);
        }
        return 0;
    }
    if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(m));
    FILE *o = fopen(argv[3], "wb");
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), 4, nv, o);
    fclose(o);
    return 0;
}
