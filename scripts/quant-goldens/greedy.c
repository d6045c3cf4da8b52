// Greedy decoding with llama.cpp, for golden files of re-quantized models.
//
// usage: greedy MODEL.gguf PROMPTS.txt STEPS [repack=on|off|REGEX]
//
// PROMPTS.txt: one prompt per line, token ids separated by commas. For each prompt: a fresh
// context (n_ctx 2048, F16 KV cache, flash attention on: llama.cpp's CPU defaults, 2 threads),
// the prompt decoded as one batch, then up to STEPS greedy tokens one per decode, stopping
// after an end-of-generation token. Prints one line per step:
//   P<prompt index> <id> <top id>:<logprob> x5
// with log-softmax over the whole vocabulary in double. repack=off keeps the weights out of
// the CPU_REPACK/AMX buffers (needed on AMX machines, where the AMX path crashes; types
// ggml repacks then take the unrepacked kernels). repack=REGEX does the same but puts the
// tensors whose names match REGEX into the CPU_REPACK buffer, which is what llama.cpp does by
// default on an AVX2 machine without AMX (give it the tensors of the types ggml repacks).
#include "ggml-backend.h"
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(enum ggml_log_level level, const char * text, void * data) {
    (void) level; (void) text; (void) data;
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPTS.txt STEPS [repack=on|off]\n", argv[0]);
        return 2;
    }
    const int steps = atoi(argv[3]);
    const char * repack = argc > 4 && !strncmp(argv[4], "repack=", 7) ? argv[4] + 7 : "on";
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    static struct llama_model_tensor_buft_override overrides[2];
    if (strcmp(repack, "on")) mp.use_extra_bufts = false;
    if (strcmp(repack, "on") && strcmp(repack, "off")) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
        typedef ggml_backend_buffer_type_t * (*get_extra_t)(ggml_backend_dev_t);
        get_extra_t get_extra = (get_extra_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
        for (ggml_backend_buffer_type_t * b = get_extra ? get_extra(dev) : NULL; b && *b; b++) {
            if (!strcmp(ggml_backend_buft_name(*b), "CPU_REPACK")) overrides[0].buft = *b;
        }
        if (!overrides[0].buft) { fprintf(stderr, "no CPU_REPACK buffer type\n"); return 1; }
        overrides[0].pattern = repack;
        mp.tensor_buft_overrides = overrides;
    }
    struct llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    FILE * pf = fopen(argv[2], "r");
    if (!pf) { perror(argv[2]); return 1; }
    static char line[1 << 16];
    double * lp = malloc(sizeof(double) * n_vocab);
    for (int p = 0; fgets(line, sizeof line, pf); p++) {
        llama_token toks[2048];
        int n = 0;
        for (char * s = strtok(line, ",\n"); s && n < 2048; s = strtok(NULL, ",\n")) toks[n++] = atoi(s);
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 2048; cp.n_batch = 2048; cp.n_ubatch = 2048; cp.n_seq_max = 1;
        cp.n_threads = 2; cp.n_threads_batch = 2;
        cp.type_k = GGML_TYPE_F16; cp.type_v = GGML_TYPE_F16;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
        cp.no_perf = true;
        struct llama_context * ctx = llama_init_from_model(model, cp);
        struct llama_batch batch = llama_batch_init(2048, 0, 1);
        for (int i = 0; i < n; i++) {
            batch.token[i] = toks[i]; batch.pos[i] = i; batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0; batch.logits[i] = i == n - 1;
        }
        batch.n_tokens = n;
        if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 1; }
        for (int k = 0; k < steps; k++) {
            const float * l = llama_get_logits_ith(ctx, -1);
            double m = -INFINITY, z = 0;
            for (int i = 0; i < n_vocab; i++) if (l[i] > m) m = l[i];
            for (int i = 0; i < n_vocab; i++) z += exp((double) l[i] - m);
            z = log(z) + m;
            for (int i = 0; i < n_vocab; i++) lp[i] = (double) l[i] - z;
            int top[5];
            for (int t = 0; t < 5; t++) {
                int best = -1;
                for (int i = 0; i < n_vocab; i++) {
                    int used = 0;
                    for (int u = 0; u < t; u++) used |= top[u] == i;
                    if (!used && (best < 0 || l[i] > l[best])) best = i;
                }
                top[t] = best;
            }
            printf("P%d %d", p, top[0]);
            for (int t = 0; t < 5; t++) printf(" %d:%.6f", top[t], lp[top[t]]);
            printf("\n");
            if (llama_vocab_is_eog(vocab, top[0])) break;
            batch.token[0] = top[0]; batch.pos[0] = n + k; batch.n_seq_id[0] = 1;
            batch.seq_id[0][0] = 0; batch.logits[0] = 1; batch.n_tokens = 1;
            if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 1; }
        }
        llama_batch_free(batch);
        llama_free(ctx);
    }
    return 0;
}
