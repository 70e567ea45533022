/* Stage 3 of the Leviathan generator on a CPU: the separable B-spline modes, forward and
 * backward, in one pass each with no [n, M, d, r] intermediate in memory.
 *
 *   u [n, M, d] in [0, 1], coeff = 1 + Delta [M, d, kappa, r]  ->  psi [n, M, r]
 *   phi_{i,m,d,:} = sum_j w_j(u) coeff[m, d, g0 - 1 + j, :]    (the three active quadratic B-splines)
 *   psi_{i,m,:}   = prod_d phi_{i,m,d,:}
 *
 * The same arithmetic as bsplines.active_weights_and_slopes and the Triton kernels: with
 * x = clamp(u, 0, 1) (kappa - 1), g0 = round-half-even(x), t = x - g0, the raw weights
 * (0.5 (0.5 - t)^2, 0.75 - t^2, 0.5 (0.5 + t)^2) masked to valid knots and normalised.
 * The product is taken as a running product (no logf); where that could differ from the
 * reference's sign parity * exp(sum_d log max(|phi|, 1e-30)) by more than rounding (a factor
 * below 1e-30, a partial product outside float32's normal range) the (id, mode) is redone in
 * that form.
 * Backward: grad_phi = g psi / phi (0 where |phi| < 1e-30), grad_coeff[rows_j] += w_j grad_phi,
 * grad_u = sum_k grad_phi_k sum_j dw_j/du rows_j[k]. The weights and slopes of a (id, mode)'s d
 * coordinates are computed first, in a loop gcc vectorises across coordinates. Plain C99, no
 * Python or torch headers, so that it builds in about a second; leviathan_explore/modes_cpu.py
 * compiles and loads it.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TINY 1e-30f

/* Weights and slopes of one coordinate from its raw values, dividing by their total (which is 1
 * in the interior: the three quadratic pieces sum to one). Kept out of line so that the division
 * stays an exact scalar one: vectorised, gcc turns it into an approximate reciprocal, which cost
 * 1e-5 of accuracy at d_seed 128. */
__attribute__((noinline)) static void normalise(float a[3], float s[3], float inside, float km1,
                                                float *w, float *dw) {
    float total = a[0] + a[1] + a[2], slope_total = s[0] + s[1] + s[2];
    for (int j = 0; j < 3; ++j) {
        w[j] = a[j] / total;
        dw[j] = inside * (s[j] - w[j] * slope_total) / total * km1;
    }
}

/* The active basis functions of the d coordinates of one (id, mode), as plain arrays so that
 * gcc vectorises the loop across coordinates: lo[dd] = g0, the middle one's knot (the three
 * rows are g0 - 1, g0, g0 + 1, clamped), weights w[3 dd + j] and slopes dw[3 dd + j] (0 for a
 * row outside the knots). Interior coordinates need no normalisation; the edge ones (g0 = 0 or
 * kappa - 1, where a row is missing) are redone by normalise(). */
static void active_all(const float *um, int64_t d, int64_t kappa, int *lo, float *w, float *dw) {
    const float km1 = (float)(kappa - 1);
    for (int64_t dd = 0; dd < d; ++dd) {
        float uu = um[dd];
        float inside = (uu >= 0.0f && uu <= 1.0f) ? 1.0f : 0.0f;
        float x = fminf(fmaxf(uu, 0.0f), 1.0f) * km1;
        float g0 = nearbyintf(x);
        float t = x - g0;
        float sc = inside * km1;
        w[3 * dd] = 0.5f * (0.5f - t) * (0.5f - t);
        w[3 * dd + 1] = 0.75f - t * t;
        w[3 * dd + 2] = 0.5f * (0.5f + t) * (0.5f + t);
        dw[3 * dd] = (t - 0.5f) * sc;
        dw[3 * dd + 1] = -2.0f * t * sc;
        dw[3 * dd + 2] = (0.5f + t) * sc;
        lo[dd] = (int)g0;
    }
    for (int64_t dd = 0; dd < d; ++dd) {
        if (lo[dd] > 0 && lo[dd] < kappa - 1) continue;
        float uu = um[dd], inside = (uu >= 0.0f && uu <= 1.0f) ? 1.0f : 0.0f;
        float x = fminf(fmaxf(uu, 0.0f), 1.0f) * km1;
        float t = x - nearbyintf(x);
        float a[3] = {0.5f * (0.5f - t) * (0.5f - t), 0.75f - t * t, 0.5f * (0.5f + t) * (0.5f + t)};
        float s[3] = {t - 0.5f, -2.0f * t, 0.5f + t};
        if (lo[dd] == 0) { a[0] = 0.0f; s[0] = 0.0f; }
        if (lo[dd] >= kappa - 1) { a[2] = 0.0f; s[2] = 0.0f; }
        normalise(a, s, inside, km1, w + 3 * dd, dw + 3 * dd);
    }
}

/* The three rows of coordinate dd of mode m in coeff [M, d, kappa, r] (clamped at the edges,
 * where active_all gives the missing row weight 0), the forward and the backward alike. */
static inline void rows_of(const float *coeff, int64_t m, int64_t dd, int64_t d, int64_t kappa, int64_t r, int lo,
                           const float **r0, const float **r1, const float **r2, int g[3]) {
    const float *base = coeff + (m * d + dd) * kappa * r;
    g[0] = lo > 0 ? lo - 1 : 0;
    g[1] = lo;
    g[2] = lo + 1 < kappa ? lo + 1 : (int)kappa - 1;
    *r0 = base + g[0] * r; *r1 = base + g[1] * r; *r2 = base + g[2] * r;
}

/* 1 when x is inf, nan, zero or subnormal: read from its exponent bits, which -ffast-math's
 * assumption of finite arithmetic cannot fold away. */
static inline int not_normal(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint32_t e = (bits >> 23) & 0xffu;
    return e == 0xffu || e == 0u;
}

/* phi[k] = sum_j w3[j] rows_j[k], the factor of coordinate dd of mode m. */
static inline void coord_phi(const float *coeff, int64_t m, int64_t dd, int64_t d, int64_t kappa, int64_t r,
                             int lo, const float *w3, float *phi) {
    const float *r0, *r1, *r2; int g[3];
    rows_of(coeff, m, dd, d, kappa, r, lo, &r0, &r1, &r2, g);
    for (int64_t k = 0; k < r; ++k) phi[k] = w3[0] * r0[k] + w3[1] * r1[k] + w3[2] * r2[k];
}

/* The reference's form of one (id, mode): out = sign parity * exp(sum_d log max(|phi|, TINY)). */
static void log_form(const float *coeff, int64_t m, int64_t d, int64_t kappa, int64_t r, const int *lo,
                     const float *w, float *phi, float *logabs, float *negatives, float *out) {
    for (int64_t k = 0; k < r; ++k) { logabs[k] = 0.0f; negatives[k] = 0.0f; }
    for (int64_t dd = 0; dd < d; ++dd) {
        coord_phi(coeff, m, dd, d, kappa, r, lo[dd], w + 3 * dd, phi);
        for (int64_t k = 0; k < r; ++k) {
            logabs[k] += logf(fmaxf(fabsf(phi[k]), TINY));
            negatives[k] += phi[k] < 0.0f ? 1.0f : 0.0f;
        }
    }
    for (int64_t k = 0; k < r; ++k) out[k] = (((int)negatives[k]) & 1 ? -1.0f : 1.0f) * expf(logabs[k]);
}

void leviathan_modes_forward(const float *u, const float *coeff, float *psi, int64_t n, int64_t M,
                             int64_t d, int64_t kappa, int64_t r) {
    /* psi = prod_d phi as a running product, tracking the smallest |phi| and the smallest partial
     * |product|. An (id, mode) with a factor below TINY, a partial product below FLT_MIN (where
     * float32 loses precision) or a result that is not a normal float (a partial product that
     * overflowed) is redone by log_form. */
    float *phi = malloc(sizeof(float) * r), *prod = malloc(sizeof(float) * r);
    float *minabs = malloc(sizeof(float) * r), *minprod = malloc(sizeof(float) * r);
    float *w = malloc(sizeof(float) * 3 * d), *dw = malloc(sizeof(float) * 3 * d);
    int *lo = malloc(sizeof(int) * d);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t m = 0; m < M; ++m) {
            const float *um = u + (i * M + m) * d;
            active_all(um, d, kappa, lo, w, dw);
            for (int64_t k = 0; k < r; ++k) { prod[k] = 1.0f; minabs[k] = 1.0f; minprod[k] = 1.0f; }
            for (int64_t dd = 0; dd < d; ++dd) {
                /* coord_phi's sum, kept in registers here: through its buffer this loop ran ~15% slower */
                const float *r0, *r1, *r2; int g[3];
                rows_of(coeff, m, dd, d, kappa, r, lo[dd], &r0, &r1, &r2, g);
                const float w0 = w[3 * dd], w1 = w[3 * dd + 1], w2 = w[3 * dd + 2];
                for (int64_t k = 0; k < r; ++k) {
                    float f = w0 * r0[k] + w1 * r1[k] + w2 * r2[k];
                    prod[k] *= f;
                    minabs[k] = fminf(minabs[k], fabsf(f));
                    minprod[k] = fminf(minprod[k], fabsf(prod[k]));
                }
            }
            float *out = psi + (i * M + m) * r;
            int redo = 0;
            for (int64_t k = 0; k < r; ++k) {
                out[k] = prod[k];
                redo |= (minabs[k] < TINY) | (minprod[k] < FLT_MIN) | not_normal(prod[k]);
            }
            if (redo)  /* rare; prod and minabs serve as its scratch */
                log_form(coeff, m, d, kappa, r, lo, w, phi, prod, minabs, out);
        }
    }
    free(phi); free(prod); free(minabs); free(minprod); free(w); free(dw); free(lo);
}

/* grad_u [n, M, d] is written; grad_coeff [M, d, kappa, r] must be zeroed by the caller. */
void leviathan_modes_backward(const float *u, const float *coeff, const float *psi, const float *grad_psi,
                              float *grad_u, float *grad_coeff, int64_t n, int64_t M, int64_t d,
                              int64_t kappa, int64_t r, int need_u, int need_coeff) {
    float *gp = malloc(sizeof(float) * r), *grad_phi = malloc(sizeof(float) * r);
    float *w = malloc(sizeof(float) * 3 * d), *dw = malloc(sizeof(float) * 3 * d);
    int *lo = malloc(sizeof(int) * d);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t m = 0; m < M; ++m) {
            const float *ps = psi + (i * M + m) * r, *gs = grad_psi + (i * M + m) * r;
            for (int64_t k = 0; k < r; ++k) gp[k] = gs[k] * ps[k];
            const float *um = u + (i * M + m) * d;
            active_all(um, d, kappa, lo, w, dw);
            for (int64_t dd = 0; dd < d; ++dd) {
                const float *r0, *r1, *r2; int g[3];
                rows_of(coeff, m, dd, d, kappa, r, lo[dd], &r0, &r1, &r2, g);
                const float w0 = w[3 * dd], w1 = w[3 * dd + 1], w2 = w[3 * dd + 2];
                const float d0 = dw[3 * dd], d1 = dw[3 * dd + 1], d2 = dw[3 * dd + 2];
                /* grad_u = sum_k grad_phi_k dphi_k/du with dphi_k/du = sum_j dw_j rows_j[k]: one reduction */
                float gu = 0.0f;
                for (int64_t k = 0; k < r; ++k) {
                    float phi = w0 * r0[k] + w1 * r1[k] + w2 * r2[k];
                    float gph = fabsf(phi) >= TINY ? gp[k] / phi : 0.0f;
                    grad_phi[k] = gph;
                    gu += gph * (d0 * r0[k] + d1 * r1[k] + d2 * r2[k]);
                }
                if (need_coeff) {
                    float *gbase = grad_coeff + (m * d + dd) * kappa * r;
                    for (int j = 0; j < 3; ++j) {
                        float *row = gbase + g[j] * r;
                        const float wj = w[3 * dd + j];
                        for (int64_t k = 0; k < r; ++k) row[k] += wj * grad_phi[k];
                    }
                }
                if (need_u) grad_u[(i * M + m) * d + dd] = gu;
            }
        }
    }
    free(gp); free(grad_phi); free(w); free(dw); free(lo);
}
