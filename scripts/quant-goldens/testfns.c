// The measures of llama.cpp's tests/test-quantize-fns.cpp for one type, printed so that
// crates/quant/tests/data/thresholds.json can record what this build measures (types whose
// CPU traits have no from_float are quantized with ggml_quantize_chunk, as llama-quantize does):
//   testfns TYPE   ->   total_quantization_error vec_dot_error   (%.9g each)
#include "ggml.h"
#include "ggml-cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void generate_data(float offset, size_t n, float * dst) {
    for (size_t i = 0; i < n; i++) dst[i] = 0.1 + 2 * cosf(i + offset);
}

static float array_rmse(const float * a, const float * b, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = a[i] - b[i];
        sum += diff * diff;
    }
    return sqrtf(sum) / n;
}

static float dot_product(const float * a, const float * b, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

int main(int argc, char ** argv) {
    if (argc < 2) return 2;
    enum ggml_type type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * name = ggml_type_name((enum ggml_type)t);
        if (name && !strcasecmp(name, argv[1])) type = (enum ggml_type)t;
    }
    if (type == GGML_TYPE_COUNT) return 2;
    ggml_cpu_init();
    ggml_quantize_init(type);
    const size_t n = 32 * 128;
    float * x0 = malloc(n * 4), * x1 = malloc(n * 4), * back = malloc(n * 4);
    generate_data(0, n, x0);
    generate_data(1, n, x1);
    const struct ggml_type_traits_cpu * cpu = ggml_get_type_traits_cpu(type);
    const struct ggml_type_traits_cpu * vdt = ggml_get_type_traits_cpu(cpu->vec_dot_type);
    void * q0 = malloc(ggml_row_size(type, n));
    void * q1 = malloc(ggml_row_size(cpu->vec_dot_type, n));
    // ggml's CPU traits leave from_float unset for some types (IQ3_S; test-quantize-fns then
    // skips them): quantize as llama-quantize does instead.
    if (cpu->from_float) {
        cpu->from_float(x0, q0, n);
    } else {
        ggml_quantize_chunk(type, x0, q0, 0, 1, n, NULL);
    }
    ggml_get_type_traits(type)->to_float(q0, back, n);
    vdt->from_float(x1, q1, n);
    float r;
    cpu->vec_dot(n, &r, 0, q0, 0, q1, 0, 1);
    printf("%.9g %.9g\n", array_rmse(x0, back, n), fabsf(r - dot_product(x0, x1, n)) / n);
    return 0;
}
