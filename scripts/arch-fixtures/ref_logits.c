// ref_logits.c -- llama.cpp reference logits for tiny GGUF fixtures.
//
// usage: ref_logits MODEL.gguf OUT.json [kv=f32|f16] [fa=off|auto|on] [mode=full|top5] [repack=on|off] [-v]
//
// * repack=off sets llama_model_params.use_extra_bufts = false (no CPU_REPACK / AMX weight
//   repacking; recorded as "use_extra_bufts":false in the JSON, absent = llama.cpp default true).
//   Needed on AMX hosts: b11434's AMX Q8_0 mul_mat segfaults there on these tiny models.
// * CPU only, n_threads 2, n_ctx 128 (llama.cpp pads the KV size to 256), n_batch = n_ubatch = 128
// * prompt: llama_tokenize(PROMPT_TEXT, add_special=true, parse_special=false), first N_PROMPT ids
// * the whole prompt is decoded in ONE batch with logits requested for every position
// * then greedy generation: gen[0] = argmax(prompt_logits[N_PROMPT-1]); for k = 0..N_GEN-1 the
//   token gen[k] is decoded alone at position N_PROMPT+k, giving gen_logits[k];
//   gen[k+1] = argmax(gen_logits[k]).  argmax ties -> lowest id.  No stop on EOS.
// * floats are printed with %.6g (6 significant digits)
//
// build: see README.txt (gcc -O2 ref_logits.c -I include -I ggml/include -L build/bin -lllama -lggml -lggml-base -Wl,-rpath,...)

#include "llama.h"
#include "ggml.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_PROMPT 24
#define N_GEN    16
#define N_CTX    128

#ifndef LLAMA_CPP_BUILD
#define LLAMA_CPP_BUILD "unknown"
#endif

static const char * PROMPT_TEXT = "The quick brown fox jumps over the lazy dog. Once upon a time";

// ---------------------------------------------------------------- log capture
static char * g_log = NULL;      // all WARN/ERROR lines, plus a few INFO lines of interest
static size_t g_log_len = 0, g_log_cap = 0;
static int g_fa_resolved = -1;   // -1 unknown, 0 disabled, 1 enabled
static int g_verbose = 0;

static void log_append(const char * s) {
    size_t n = strlen(s);
    if (g_log_len + n + 1 > g_log_cap) {
        g_log_cap = (g_log_len + n + 1) * 2 + 1024;
        g_log = realloc(g_log, g_log_cap);
    }
    memcpy(g_log + g_log_len, s, n);
    g_log_len += n;
    g_log[g_log_len] = 0;
}

static enum ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

static void log_cb(enum ggml_log_level level, const char * text, void * ud) {
    (void) ud;
    if (level == GGML_LOG_LEVEL_CONT) {
        level = g_last_level;
    } else {
        g_last_level = level;
    }
    if (g_verbose) {
        fputs(text, stderr);
    }
    if (strstr(text, "Flash Attention") || strstr(text, "flash_attn")) {
        if (strstr(text, "enabled"))  g_fa_resolved = 1;
        if (strstr(text, "disabled")) g_fa_resolved = 0;
        log_append(text);
        return;
    }
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) {
        log_append(text);
    }
}

// ---------------------------------------------------------------- json helpers
static void json_str(FILE * f, const char * s) {
    fputc('"', f);
    for (const unsigned char * p = (const unsigned char *) s; *p; ++p) {
        switch (*p) {
            case '"':  fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f);  break;
            case '\r': fputs("\\r", f);  break;
            case '\t': fputs("\\t", f);  break;
            default:
                if (*p < 0x20) fprintf(f, "\\u%04x", *p);
                else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_float(FILE * f, float v) {
    if (!isfinite(v)) {
        fputs("null", f);   // non-finite -> null (also flagged in "n_nonfinite")
        return;
    }
    char buf[64];
    snprintf(buf, sizeof(buf), "%.6g", (double) v);
    fputs(buf, f);
}

static void json_floats(FILE * f, const float * v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; ++i) {
        if (i) fputc(',', f);
        json_float(f, v[i]);
    }
    fputc(']', f);
}

static int argmax(const float * v, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
        if (v[i] > v[best]) best = i;   // strict '>' -> ties keep the lowest id
    }
    return best;
}

static void json_top5(FILE * f, const float * v, int n) {
    int idx[5];
    int k = 0;
    // simple selection: 5 passes
    for (; k < 5 && k < n; ++k) {
        int best = -1;
        for (int i = 0; i < n; ++i) {
            int used = 0;
            for (int j = 0; j < k; ++j) if (idx[j] == i) { used = 1; break; }
            if (used) continue;
            if (best < 0 || v[i] > v[best]) best = i;
        }
        idx[k] = best;
    }
    fputc('[', f);
    for (int j = 0; j < k; ++j) {
        if (j) fputc(',', f);
        fprintf(f, "[%d,", idx[j]);
        json_float(f, v[idx[j]]);
        fputc(']', f);
    }
    fputc(']', f);
}

static float top1_margin(const float * v, int n) {
    int a = argmax(v, n);
    float second = -INFINITY;
    for (int i = 0; i < n; ++i) if (i != a && v[i] > second) second = v[i];
    return v[a] - second;
}

static int count_nonfinite(const float * v, int n) {
    int c = 0;
    for (int i = 0; i < n; ++i) if (!isfinite(v[i])) c++;
    return c;
}

// ---------------------------------------------------------------- main
int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf OUT.json [kv=f32|f16] [fa=off|auto|on] [mode=full|top5] [repack=on|off] [-v]\n", argv[0]);
        return 1;
    }
    const char * model_path = argv[1];
    const char * out_path   = argv[2];
    const char * kv_s   = "f32";
    const char * fa_s   = "off";
    const char * mode_s = "full";
    const char * repack_s = "on";
    for (int i = 3; i < argc; ++i) {
        if (!strncmp(argv[i], "kv=", 3))   kv_s   = argv[i] + 3;
        else if (!strncmp(argv[i], "fa=", 3))   fa_s   = argv[i] + 3;
        else if (!strncmp(argv[i], "mode=", 5)) mode_s = argv[i] + 5;
        else if (!strncmp(argv[i], "repack=", 7)) repack_s = argv[i] + 7;
        else if (!strcmp(argv[i], "-v")) g_verbose = 1;
        else { fprintf(stderr, "bad arg %s\n", argv[i]); return 1; }
    }
    const int full = strcmp(mode_s, "full") == 0;
    enum ggml_type kv_type = strcmp(kv_s, "f16") == 0 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    enum llama_flash_attn_type fa_type =
        strcmp(fa_s, "auto") == 0 ? LLAMA_FLASH_ATTN_TYPE_AUTO :
        strcmp(fa_s, "on")   == 0 ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;

    llama_log_set(log_cb, NULL);
    llama_backend_init();

    struct llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    const int repack = strcmp(repack_s, "off") != 0;
    if (!repack) {
        mparams.use_extra_bufts = false;
    }

    struct llama_model * model = llama_model_load_from_file(model_path, mparams);
    if (!model) {
        fprintf(stderr, "failed to load model %s\n%s", model_path, g_log ? g_log : "");
        FILE * f = fopen(out_path, "w");
        if (f) {
            fputs("{\"model\":", f); json_str(f, model_path);
            fputs(",\"error\":\"model load failed\",\"log\":", f); json_str(f, g_log ? g_log : "");
            fputs("}\n", f);
            fclose(f);
        }
        return 2;
    }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx           = N_CTX;
    cparams.n_batch         = N_CTX;
    cparams.n_ubatch        = N_CTX;
    cparams.n_seq_max       = 1;
    cparams.n_threads       = 2;
    cparams.n_threads_batch = 2;
    cparams.type_k          = kv_type;
    cparams.type_v          = kv_type;
    cparams.flash_attn_type = fa_type;
    cparams.no_perf         = true;

    size_t log_mark = g_log_len;   // load-time log ends here
    struct llama_context * ctx = llama_init_from_model(model, cparams);
    if (!ctx) {
        fprintf(stderr, "failed to create context\n%s", g_log ? g_log : "");
        return 3;
    }
    (void) log_mark;
    if (fa_type == LLAMA_FLASH_ATTN_TYPE_DISABLED) g_fa_resolved = 0;
    if (fa_type == LLAMA_FLASH_ATTN_TYPE_ENABLED)  g_fa_resolved = 1;

    // ---- tokenize
    llama_token toks[512];
    int n_tok = llama_tokenize(vocab, PROMPT_TEXT, (int) strlen(PROMPT_TEXT), toks, 512, true, false);
    if (n_tok < N_PROMPT) {
        fprintf(stderr, "prompt tokenized to only %d tokens (< %d)\n", n_tok, N_PROMPT);
        return 4;
    }

    float * prompt_logits = malloc(sizeof(float) * (size_t) N_PROMPT * n_vocab);
    float * gen_logits    = malloc(sizeof(float) * (size_t) N_GEN * n_vocab);
    int gen_ids[N_GEN + 1];

    // ---- prompt: one batch, logits for every position
    struct llama_batch batch = llama_batch_init(N_CTX, 0, 1);
    for (int i = 0; i < N_PROMPT; ++i) {
        batch.token[i]     = toks[i];
        batch.pos[i]       = i;
        batch.n_seq_id[i]  = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i]    = 1;
    }
    batch.n_tokens = N_PROMPT;
    int rc = llama_decode(ctx, batch);
    if (rc != 0) {
        fprintf(stderr, "llama_decode(prompt) failed: %d\n", rc);
        return 5;
    }
    for (int i = 0; i < N_PROMPT; ++i) {
        const float * l = llama_get_logits_ith(ctx, i);
        memcpy(prompt_logits + (size_t) i * n_vocab, l, sizeof(float) * n_vocab);
    }

    // ---- greedy generation, one token per decode
    gen_ids[0] = argmax(prompt_logits + (size_t)(N_PROMPT - 1) * n_vocab, n_vocab);
    for (int k = 0; k < N_GEN; ++k) {
        batch.token[0]     = gen_ids[k];
        batch.pos[0]       = N_PROMPT + k;
        batch.n_seq_id[0]  = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0]    = 1;
        batch.n_tokens     = 1;
        rc = llama_decode(ctx, batch);
        if (rc != 0) {
            fprintf(stderr, "llama_decode(gen %d) failed: %d\n", k, rc);
            return 6;
        }
        const float * l = llama_get_logits_ith(ctx, -1);
        memcpy(gen_logits + (size_t) k * n_vocab, l, sizeof(float) * n_vocab);
        gen_ids[k + 1] = argmax(gen_logits + (size_t) k * n_vocab, n_vocab);
    }

    int n_nonfinite = count_nonfinite(prompt_logits, N_PROMPT * n_vocab) + count_nonfinite(gen_logits, N_GEN * n_vocab);

    // ---- write json
    FILE * f = fopen(out_path, "w");
    if (!f) { perror(out_path); return 7; }
    char desc[256];
    llama_model_desc(model, desc, sizeof(desc));
    const char * slash = strrchr(model_path, '/');

    fputs("{\n\"model\":", f); json_str(f, slash ? slash + 1 : model_path);
    fputs(",\n\"model_desc\":", f); json_str(f, desc);
    fprintf(f, ",\n\"llama_cpp_version\":");
    {
        char v[256];
        snprintf(v, sizeof(v), "%s (llama_version %s)", LLAMA_CPP_BUILD, llama_version());
        json_str(f, v);
    }
    fprintf(f, ",\n\"kv_type\":\"%s\"", kv_type == GGML_TYPE_F32 ? "f32" : "f16");
    fprintf(f, ",\n\"flash_attn\":\"%s\"", g_fa_resolved == 1 ? "enabled" : g_fa_resolved == 0 ? "disabled" : "unknown");
    fprintf(f, ",\n\"flash_attn_requested\":\"%s\"", fa_s);
    if (!repack) {
        fputs(",\n\"use_extra_bufts\":false", f);
    }
    fprintf(f, ",\n\"n_threads\":2,\n\"n_ctx_requested\":%d,\n\"n_ctx\":%u,\n\"n_batch\":%d,\n\"n_ubatch\":%d",
            N_CTX, llama_n_ctx(ctx), N_CTX, N_CTX);
    fprintf(f, ",\n\"n_vocab\":%d", n_vocab);
    fputs(",\n\"prompt_text\":", f); json_str(f, PROMPT_TEXT);
    fprintf(f, ",\n\"prompt_text_token_count\":%d", n_tok);
    fputs(",\n\"prompt_text_ids\":[", f);
    for (int i = 0; i < n_tok; ++i) fprintf(f, "%s%d", i ? "," : "", toks[i]);
    fputs("]", f);
    fputs(",\n\"prompt_ids\":[", f);
    for (int i = 0; i < N_PROMPT; ++i) fprintf(f, "%s%d", i ? "," : "", toks[i]);
    fputs("]", f);
    if (full) {
        fputs(",\n\"prompt_logits\":[", f);
        for (int i = 0; i < N_PROMPT; ++i) {
            fputs(i ? ",\n" : "\n", f);
            json_floats(f, prompt_logits + (size_t) i * n_vocab, n_vocab);
        }
        fputs("]", f);
    }
    fputs(",\n\"prompt_logits_top5\":[", f);
    for (int i = 0; i < N_PROMPT; ++i) {
        fputs(i ? ",\n" : "\n", f);
        json_top5(f, prompt_logits + (size_t) i * n_vocab, n_vocab);
    }
    fputs("]", f);
    fputs(",\n\"generated_ids\":[", f);
    for (int k = 0; k < N_GEN; ++k) fprintf(f, "%s%d", k ? "," : "", gen_ids[k]);
    fputs("]", f);
    fprintf(f, ",\n\"next_id_after_gen\":%d", gen_ids[N_GEN]);
    // margin (top1 - top2) of the logits each generated id was picked from:
    // step 0 -> prompt_logits[N_PROMPT-1], step k>0 -> gen_logits[k-1]
    fputs(",\n\"greedy_margins\":[", f);
    for (int k = 0; k < N_GEN; ++k) {
        const float * l = k == 0 ? prompt_logits + (size_t)(N_PROMPT - 1) * n_vocab : gen_logits + (size_t)(k - 1) * n_vocab;
        if (k) fputc(',', f);
        json_float(f, top1_margin(l, n_vocab));
    }
    fputs("]", f);
    fputs(",\n\"gen_logits_top5\":[", f);
    for (int k = 0; k < N_GEN; ++k) {
        fputs(k ? ",\n" : "\n", f);
        json_top5(f, gen_logits + (size_t) k * n_vocab, n_vocab);
    }
    fputs("]", f);
    if (full) {
        fputs(",\n\"gen_logits\":[", f);
        for (int k = 0; k < N_GEN; ++k) {
            fputs(k ? ",\n" : "\n", f);
            json_floats(f, gen_logits + (size_t) k * n_vocab, n_vocab);
        }
        fputs("]", f);
    }
    fprintf(f, ",\n\"n_nonfinite\":%d", n_nonfinite);
    fputs(",\n\"log_warnings\":", f); json_str(f, g_log ? g_log : "");
    fputs("\n}\n", f);
    fclose(f);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(prompt_logits);
    free(gen_logits);
    return n_nonfinite ? 8 : 0;
}
