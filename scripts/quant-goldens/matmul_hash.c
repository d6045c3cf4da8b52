// One ggml_mul_mat on llama.cpp's CPU backend, hashed, so the Rust tests can check that their
// kernels reproduce llama.cpp's summation order for a whole matmul (not just vec_dot).
//
// usage: matmul_hash TYPE K M N plain|repack [THREADS] [detail]
//
// Weights: M rows of K values from the xorshift generator below (row r scaled by 1 << (r % 3)),
// quantized by ggml_quantize_chunk (what llama-quantize calls); then N F32 tokens from the
// same stream (token t scaled by 1 << (t % 2)). The weights go into an ordinary CPU buffer
// (`plain`: vec_dot, llamafile sgemm or the tiled K-quant matmul, as ggml picks) or into the
// CPU_REPACK buffer (`repack`: ggml's interleaved 8-row layout and its gemv/gemm kernels,
// what llama.cpp does by default on x86). Prints the FNV-1a 64 hash of the output bits,
// token-major (out[t][r]), as 0x%016llx. Rust side: quant::testkit::matmul_hash. With
// `detail`, the line starts with the hashes of the quantized weight bytes and of their
// dequantization (ggml's to_float): `quant 0x... dequant 0x... out 0x...`. The IQ lattice
// types get made-up blocks instead of quantized ones (see fake_quantize).
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state = 0x9e3779b97f4a7c15ull;

static float next_value(float scale) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return ((float)(state >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

static uint64_t fnv(const void * p, size_t n, uint64_t h) {
    const unsigned char * b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

// Weights for the IQ lattice types (IQ2_*, IQ3_*, IQ1_S), which ggml quantizes only with an
// importance matrix and torchless not at all: every byte of a block is taken from the block's
// F32 values (byte j = bits of value j >> 8), then the f16 scale (at offset 0; IQ1_M: the top nibbles of its last four u16) is set to
// 2^-10 * (1 + m/1024) with m from the last value's bits. Any bytes are a valid block of these
// types. Rust side: quant::testkit::fake_quantize.
static int fake_quantized(enum ggml_type t) {
    return t == GGML_TYPE_IQ2_XXS || t == GGML_TYPE_IQ2_XS || t == GGML_TYPE_IQ2_S ||
           t == GGML_TYPE_IQ3_XXS || t == GGML_TYPE_IQ3_S || t == GGML_TYPE_IQ1_S ||
           t == GGML_TYPE_IQ1_M;
}

static void fake_quantize(enum ggml_type t, const float * x, uint8_t * out, int64_t n) {
    const int64_t bs = ggml_blck_size(t), ts = ggml_type_size(t);
    for (int64_t b = 0; b < n / bs; b++) {
        const float * xb = x + b * bs;
        uint8_t * ob = out + b * ts;
        for (int64_t j = 0; j < ts; j++) {
            uint32_t u;
            memcpy(&u, &xb[j], 4);
            ob[j] = (u >> 8) & 0xff;
        }
        uint32_t u;
        memcpy(&u, &xb[bs - 1], 4);
        const uint16_t d = 0x1400 | ((u >> 5) & 0x3ff);
        if (t == GGML_TYPE_IQ1_M) {
            // The scale's four nibbles are the top nibbles of the last four u16 (bytes 48..56).
            for (int i = 0; i < 4; i++) {
                ob[49 + 2 * i] = (ob[49 + 2 * i] & 0x0f) | (((d >> (4 * i)) & 0xf) << 4);
            }
        } else {
            ob[0] = d & 0xff;
            ob[1] = d >> 8;
        }
    }
}

static ggml_backend_buffer_type_t repack_buft(void) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    typedef ggml_backend_buffer_type_t * (*get_extra_t)(ggml_backend_dev_t);
    get_extra_t get_extra =
        (get_extra_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (!get_extra) return NULL;
    for (ggml_backend_buffer_type_t * b = get_extra(dev); b && *b; b++) {
        if (!strcmp(ggml_backend_buft_name(*b), "CPU_REPACK")) return *b;
    }
    return NULL;
}

int main(int argc, char ** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s TYPE K M N plain|repack [THREADS]\n", argv[0]);
        return 2;
    }
    enum ggml_type type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * name = ggml_type_name((enum ggml_type)t);
        if (name && !strcasecmp(name, argv[1])) type = (enum ggml_type)t;
    }
    if (type == GGML_TYPE_COUNT) {
        fprintf(stderr, "unknown type %s\n", argv[1]);
        return 2;
    }
    const int64_t K = atoll(argv[2]), M = atoll(argv[3]), N = atoll(argv[4]);
    const int repack = !strcmp(argv[5], "repack");
    const int threads = argc > 6 ? atoi(argv[6]) : 1;
    const int detail = argc > 7 && !strcmp(argv[7], "detail");

    float * wf = malloc(sizeof(float) * K * M);
    for (int64_t r = 0; r < M; r++)
        for (int64_t k = 0; k < K; k++) wf[r * K + k] = next_value((float)(1 << (r % 3)));
    float * xf = malloc(sizeof(float) * K * N);
    for (int64_t t = 0; t < N; t++)
        for (int64_t k = 0; k < K; k++) xf[t * K + k] = next_value((float)(1 << (t % 2)));
    size_t wbytes = ggml_row_size(type, K) * M;
    void * wq = malloc(wbytes);
    // GGML_QUANTIZE=1: ggml's own quantizer for these too (IQ3_S needs no importance matrix).
    // GGML_QW=1: quantize with an importance matrix, column k weighted 1 + (7919 k mod 97) / 16
    // (Rust side: quant::testkit::column_weights).
    float * qw = NULL;
    if (getenv("GGML_QW")) {
        qw = malloc(sizeof(float) * K);
        for (int64_t k = 0; k < K; k++) qw[k] = (float)(1 + (7919 * k) % 97) / 16.0f;
    }
    if (fake_quantized(type) && !getenv("GGML_QUANTIZE") && !qw) {
        fake_quantize(type, wf, wq, K * M);
    } else {
        ggml_quantize_chunk(type, wf, wq, 0, M, K, qw);
    }

    struct ggml_init_params ip = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), NULL, true};
    struct ggml_context * ctx_w = ggml_init(ip);
    struct ggml_context * ctx = ggml_init(ip);
    struct ggml_tensor * w = ggml_new_tensor_2d(ctx_w, type, K, M);
    struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, N);
    struct ggml_tensor * out = ggml_mul_mat(ctx, w, x);
    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, out);

    ggml_backend_buffer_type_t wbuft = repack ? repack_buft() : ggml_backend_cpu_buffer_type();
    if (!wbuft) {
        fprintf(stderr, "no CPU_REPACK buffer type in this build\n");
        return 1;
    }
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, wbuft);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
    if (!wbuf || !buf) {
        fprintf(stderr, "allocation failed\n");
        return 1;
    }
    ggml_backend_tensor_set(w, wq, 0, wbytes);
    ggml_backend_tensor_set(x, xf, 0, sizeof(float) * K * N);

    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, threads);
    if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "compute failed\n");
        return 1;
    }
    float * o = malloc(sizeof(float) * M * N);
    ggml_backend_tensor_get(out, o, 0, sizeof(float) * M * N);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < M * N; i++) {
        uint32_t bits;
        memcpy(&bits, &o[i], 4);
        for (int b = 0; b < 4; b++) {
            h ^= (bits >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    if (detail) {
        float * deq = malloc(sizeof(float) * K * M);
        ggml_get_type_traits(type)->to_float(wq, deq, K * M);
        printf("quant 0x%016llx dequant 0x%016llx out ", (unsigned long long) fnv(wq, wbytes, 0xcbf29ce484222325ull),
               (unsigned long long) fnv(deq, sizeof(float) * K * M, 0xcbf29ce484222325ull));
    }
    printf("0x%016llx\n", (unsigned long long)h);
    return 0;
}
