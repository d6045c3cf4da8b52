// ggml's CPU `vec_dot` for one tensor type, called directly on every (token, row) pair and
// hashed, so the Rust tests can check that a kernel reproduces the summation order of the
// ggml build this is linked against (made for the aarch64 goldens: see aarch64.sh).
//
// usage: vec_dot_hash TYPE K M N [print|repack|plain]
//
// With `repack`, the same weights go into ggml's CPU_REPACK buffer and the N tokens (F32)
// through one ggml_mul_mat, as llama.cpp runs a matrix its build repacks (on ARM with the
// dot-product extension: Q4_0, IQ4_NL and Q8_0 as 4x4 interleaved rows; gemm for tokens
// 0..N - N % 4, gemv for the rest); `dot` is then the hash of that matmul's output. With
// `plain`, the same matmul with the weights in an ordinary CPU buffer (vec_dot, llamafile's
// sgemm or the tiled K-quant matmul, as ggml picks).
//
// Weights: for the float types, M rows of K values from matmul_hash.c's xorshift stream (row r
// scaled by 1 << (r % 3)) converted by ggml_quantize_chunk; for the block types, random block
// bytes from a second xorshift stream with every f16 field of a block (scales, mins) then set
// to a random value of magnitude 2^-7..2^-1 (not quantized floats: ggml's aarch64 build
// contracts its reference quantizers' arithmetic into FMAs, so its K-quant bytes differ from
// x86's and this crate's). Then N tokens (token t scaled by 1 << (t % 2)), quantized to the
// type's vec_dot_type by the CPU backend's own `from_float` (what a mul_mat does; on ARM that
// is the NEON quantizer). Prints
// `act 0x... dot 0x...`: the FNV-1a 64 hashes of the quantized activation bytes and of the
// dot products' bits, token-major (dot[t][r]). Rust side: quant::testkit::vec_dot_hash.
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t state = 0x9e3779b97f4a7c15ull;

static float next_value(float scale) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return ((float)(state >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

static uint64_t bstate = 0x2545f4914f6cdd1dull;

static uint32_t next_u32(void) {
    bstate ^= bstate << 13;
    bstate ^= bstate >> 7;
    bstate ^= bstate << 17;
    return (uint32_t)(bstate >> 32);
}

// Byte offsets of the f16 fields of a block, -1 terminated; NULL for the float types.
static const int * f16_fields(enum ggml_type t) {
    static const int d0[] = {0, -1}, d0m2[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1}, tq1[] = {52, -1}, tq2[] = {64, -1};
    switch (t) {
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0: case GGML_TYPE_IQ4_NL:
        case GGML_TYPE_IQ4_XS: return d0;
        case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
            return d0m2;
        case GGML_TYPE_Q2_K: return q2k;
        case GGML_TYPE_Q3_K: return q3k;
        case GGML_TYPE_Q6_K: return q6k;
        case GGML_TYPE_TQ1_0: return tq1;
        case GGML_TYPE_TQ2_0: return tq2;
        default: return NULL;
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

// One ggml_mul_mat of the weights (in CPU_REPACK) with the F32 tokens; returns the output
// hash, token-major.
static uint64_t matmul(enum ggml_type type, const void * wq, size_t wbytes, const float * xf,
                       int64_t K, int64_t M, int64_t N, int repack) {
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
        exit(1);
    }
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, wbuft);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
    if (!wbuf || !buf) {
        fprintf(stderr, "allocation failed\n");
        exit(1);
    }
    ggml_backend_tensor_set(w, wq, 0, wbytes);
    ggml_backend_tensor_set(x, xf, 0, sizeof(float) * K * N);
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, 1);
    if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "compute failed\n");
        exit(1);
    }
    float * o = malloc(sizeof(float) * M * N);
    ggml_backend_tensor_get(out, o, 0, sizeof(float) * M * N);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < M * N; i++) {
        const unsigned char * b = (const unsigned char *)&o[i];
        for (int j = 0; j < 4; j++) {
            h ^= b[j];
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

static uint64_t fnv(const void * p, size_t n, uint64_t h) {
    const unsigned char * b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int main(int argc, char ** argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s TYPE K M N\n", argv[0]);
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
    const int print = argc > 5 && !strcmp(argv[5], "print");
    const int repack = argc > 5 && !strcmp(argv[5], "repack");
    const int plain = argc > 5 && !strcmp(argv[5], "plain");
    ggml_cpu_init();
    const struct ggml_type_traits_cpu * tr = ggml_get_type_traits_cpu(type);
    const enum ggml_type xt = tr->vec_dot_type;
    const struct ggml_type_traits_cpu * xtr = ggml_get_type_traits_cpu(xt);

    const int * fields = f16_fields(type);
    float * wf = malloc(sizeof(float) * K * M);
    if (!fields)
        for (int64_t r = 0; r < M; r++)
            for (int64_t k = 0; k < K; k++) wf[r * K + k] = next_value((float)(1 << (r % 3)));
    float * xf = malloc(sizeof(float) * K * N);
    for (int64_t t = 0; t < N; t++)
        for (int64_t k = 0; k < K; k++) xf[t * K + k] = next_value((float)(1 << (t % 2)));
    const size_t wrow = ggml_row_size(type, K), xrow = ggml_row_size(xt, K);
    char * wq = malloc(wrow * M);
    if (fields) {
        const size_t bsize = ggml_type_size(type);
        for (size_t i = 0; i < wrow * M; i++) wq[i] = (char)(next_u32() & 0xff);
        for (size_t b = 0; b < wrow * M / bsize; b++) {
            for (const int * f = fields; *f >= 0; f++) {
                uint16_t v = (uint16_t)(0x2000 + next_u32() % 0x1800);
                v |= (uint16_t)((next_u32() & 1) << 15);
                memcpy(wq + b * bsize + *f, &v, 2);
            }
        }
    } else {
        ggml_quantize_chunk(type, wf, wq, 0, M, K, NULL);
    }
    char * xq = malloc(xrow * N);
    for (int64_t t = 0; t < N; t++) {
        if (xt == GGML_TYPE_F32) {
            memcpy(xq + t * xrow, xf + t * K, xrow);
        } else {
            xtr->from_float(xf + t * K, xq + t * xrow, K);
        }
    }
    uint64_t h = 0xcbf29ce484222325ull;
    if (repack || plain) {
        h = matmul(type, wq, wrow * M, xf, K, M, N, repack);
    }
    for (int64_t t = 0; t < N && !repack && !plain; t++) {
        for (int64_t r = 0; r < M; r++) {
            float s;
            tr->vec_dot((int)K, &s, 0, wq + r * wrow, 0, xq + t * xrow, 0, 1);
            h = fnv(&s, 4, h);
            if (print) printf("%lld %lld %a\n", (long long)t, (long long)r, s);
        }
    }
    printf("act 0x%016llx dot 0x%016llx\n",
           (unsigned long long)fnv(xq, xrow * N, 0xcbf29ce484222325ull), (unsigned long long)h);
    return 0;
}
