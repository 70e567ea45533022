/* Stage 3 of the Leviathan generator on a CPU: the separable B-spline modes, forward and
 * backward, in one pass each with no [n, M, d, r] intermediate in memory.
 *
 *   u [n, M, d] in [0, 1], coeff = 1 + Delta [M, d, kappa, r]  ->  psi [n, M, r]
 *   phi_{i,m,d,:} = sum_j w_j(u) coeff[m, d, g0 - 1 + j, :]    (the three active quadratic B-splines)
 *   psi_{i,m,:}   = prod_d phi_{i,m,d,:}  = sign parity * exp(sum_d log max(|phi|, 1e-30))
 *
 * The same arithmetic as bsplines.active_weights_and_slopes and the Triton kernels: with
 * x = clamp(u, 0, 1) (kappa - 1), g0 = round-half-even(x), t = x - g0, the raw weights
 * (0.5 (0.5 - t)^2, 0.75 - t^2, 0.5 (0.5 + t)^2) masked to valid knots and normalised.
 * Backward: grad_phi = g psi / phi (0 where |phi| < 1e-30), grad_coeff[rows_j] += w_j grad_phi,
 * grad_u = sum_j dw_j/du <rows_j, grad_phi>. Plain C99, no Python or torch headers, so that it
 * builds in about a second; leviathan_explore/modes_cpu.py compiles and loads it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define TINY 1e-30f

static inline void active(float u, int kappa, int *g, float w[3], float dw[3]) {
    int inside = (u >= 0.0f) && (u <= 1.0f);
    float x = fminf(fmaxf(u, 0.0f), 1.0f) * (float)(kappa - 1);
    float g0 = nearbyintf(x);
    float t = x - g0;
    float raw[3] = {0.5f * (0.5f - t) * (0.5f - t), 0.75f - t * t, 0.5f * (0.5f + t) * (0.5f + t)};
    float slope[3] = {t - 0.5f, -2.0f * t, 0.5f + t};
    int c = (int)g0;
    float total = 0.0f, slope_total = 0.0f;
    for (int j = 0; j < 3; ++j) {
        int idx = c - 1 + j;
        if (idx < 0 || idx >= kappa) { raw[j] = 0.0f; slope[j] = 0.0f; }
        g[j] = idx < 0 ? 0 : (idx >= kappa ? kappa - 1 : idx);
        total += raw[j];
        slope_total += slope[j];
    }
    for (int j = 0; j < 3; ++j) {
        w[j] = raw[j] / total;
        dw[j] = inside ? (slope[j] - w[j] * slope_total) / total * (float)(kappa - 1) : 0.0f;
    }
}

/* Coordinate dd of mode m at u: the indices g, weights w and slopes dw of its three active basis
 * functions, and their rows r0, r1, r2 in coeff [M, d, kappa, r]; the forward and the backward alike. */
static inline void active_rows(float u, const float *coeff, int64_t m, int64_t dd, int64_t d, int64_t kappa,
                               int64_t r, int g[3], float w[3], float dw[3],
                               const float **r0, const float **r1, const float **r2) {
    active(u, (int)kappa, g, w, dw);
    const float *base = coeff + (m * d + dd) * kappa * r;
    *r0 = base + g[0] * r;
    *r1 = base + g[1] * r;
    *r2 = base + g[2] * r;
}

void leviathan_modes_forward(const float *u, const float *coeff, float *psi, int64_t n, int64_t M,
                             int64_t d, int64_t kappa, int64_t r) {
    float *logabs = malloc(sizeof(float) * r);
    int *neg = malloc(sizeof(int) * r);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t m = 0; m < M; ++m) {
            for (int64_t k = 0; k < r; ++k) { logabs[k] = 0.0f; neg[k] = 0; }
            const float *um = u + (i * M + m) * d;
            for (int64_t dd = 0; dd < d; ++dd) {
                int g[3]; float w[3], dw[3]; const float *r0, *r1, *r2;
                active_rows(um[dd], coeff, m, dd, d, kappa, r, g, w, dw, &r0, &r1, &r2);
                for (int64_t k = 0; k < r; ++k) {
                    float phi = w[0] * r0[k] + w[1] * r1[k] + w[2] * r2[k];
                    logabs[k] += logf(fmaxf(fabsf(phi), TINY));
                    neg[k] += phi < 0.0f;
                }
            }
            float *out = psi + (i * M + m) * r;
            for (int64_t k = 0; k < r; ++k) out[k] = (neg[k] & 1 ? -1.0f : 1.0f) * expf(logabs[k]);
        }
    }
    free(logabs);
    free(neg);
}

/* grad_u [n, M, d] is written; grad_coeff [M, d, kappa, r] must be zeroed by the caller. */
void leviathan_modes_backward(const float *u, const float *coeff, const float *psi, const float *grad_psi,
                              float *grad_u, float *grad_coeff, int64_t n, int64_t M, int64_t d,
                              int64_t kappa, int64_t r, int need_u, int need_coeff) {
    float *gp = malloc(sizeof(float) * r);
    float *grad_phi = malloc(sizeof(float) * r);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t m = 0; m < M; ++m) {
            const float *ps = psi + (i * M + m) * r, *gs = grad_psi + (i * M + m) * r;
            for (int64_t k = 0; k < r; ++k) gp[k] = gs[k] * ps[k];
            const float *um = u + (i * M + m) * d;
            for (int64_t dd = 0; dd < d; ++dd) {
                int g[3]; float w[3], dw[3]; const float *r0, *r1, *r2;
                active_rows(um[dd], coeff, m, dd, d, kappa, r, g, w, dw, &r0, &r1, &r2);
                float gw0 = 0.0f, gw1 = 0.0f, gw2 = 0.0f;
                for (int64_t k = 0; k < r; ++k) {
                    float phi = w[0] * r0[k] + w[1] * r1[k] + w[2] * r2[k];
                    float gph = fabsf(phi) >= TINY ? gp[k] / phi : 0.0f;
                    grad_phi[k] = gph;
                    gw0 += r0[k] * gph;
                    gw1 += r1[k] * gph;
                    gw2 += r2[k] * gph;
                }
                if (need_coeff) {
                    float *gbase = grad_coeff + (m * d + dd) * kappa * r;
                    for (int j = 0; j < 3; ++j) {
                        float *row = gbase + g[j] * r;
                        for (int64_t k = 0; k < r; ++k) row[k] += w[j] * grad_phi[k];
                    }
                }
                if (need_u) grad_u[(i * M + m) * d + dd] = dw[0] * gw0 + dw[1] * gw1 + dw[2] * gw2;
            }
        }
    }
    free(gp);
    free(grad_phi);
}
