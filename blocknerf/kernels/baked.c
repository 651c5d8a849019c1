/* Rendering a baked block: a block-sparse vertex grid over the contracted cube (blocknerf).
 *
 * The grid has N = M * B cells per axis over [0, 1]^3; brick_index[(bx * M + by) * M + bz] is the
 * brick holding cells [bB, (b+1)B) of each axis, or -1 when every vertex of those cells has zero
 * density. A brick stores the (B+1)^3 vertices of its cells (borders duplicated, so trilinear
 * interpolation never leaves the brick): density[brick * V + vertex] (float, >= 0) and
 * features[(brick * V + vertex) * F + f] (uint8, dequantised by the caller, which is linear).
 * coarse[(cx * Mc + cy) * Mc + cz] is set when any brick of the C^3 bricks of a coarse cell exists
 * (Mc = ceil(M / C)): the occupancy mip used for empty-space skipping.
 *
 * Rays are in normalised block coordinates (o + t d, t the world distance) and share the step
 * schedule of the neural renderer: edges t_0 < ... < t_K, one sample at each interval's midpoint,
 * density integrated over the interval's contracted length ds (as in march.c). Per ray it writes
 * the weighted sums of features (in quantised units), weights (opacity) and t (depth sum).
 * A sample counts while the transmittance before it exceeds t_stop (early ray termination) and when
 * its weight exceeds min_weight (as in the neural renderer, faint samples are left out), which is
 * exactly the rule of the torch reference in blocknerf/model/baked_grid.py.
 *
 * Empty space: inside the block's region (|u|_inf < 1) the contraction is the identity up to a
 * scale, so an empty brick or coarse cell is an axis-aligned box along the ray; the march jumps to
 * the first midpoint past the box's exit. In the contracted shell it steps, one lookup per step.
 */
#include <stdint.h>
#include <stddef.h>
#include <math.h>

static inline float contract_axis_scale(float ux, float uy, float uz) {
    float ax = fabsf(ux), ay = fabsf(uy), az = fabsf(uz);
    float m = ax > ay ? ax : ay;
    m = m > az ? m : az;
    return m > 1.0f ? (2.0f - 1.0f / m) / m : 1.0f;
}

static inline void contract01(const float *o, const float *d, float t, float *x) {
    float ux = o[0] + t * d[0], uy = o[1] + t * d[1], uz = o[2] + t * d[2];
    float s = contract_axis_scale(ux, uy, uz);
    x[0] = (ux * s + 2.0f) * 0.25f;
    x[1] = (uy * s + 2.0f) * 0.25f;
    x[2] = (uz * s + 2.0f) * 0.25f;
    for (int i = 0; i < 3; ++i) x[i] = x[i] < 0.0f ? 0.0f : (x[i] > 1.0f ? 1.0f : x[i]);
}

static inline int inside(const float *o, const float *d, float t) {
    return fabsf(o[0] + t * d[0]) <= 1.0f && fabsf(o[1] + t * d[1]) <= 1.0f && fabsf(o[2] + t * d[2]) <= 1.0f;
}

static inline int64_t clampi(int64_t v, int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

/* Exit distance of the ray from the box [lo, hi]^3 given in x01 coordinates (inside the region,
 * where u = 4 x - 2), clipped to the region |u| <= 1. */
static inline float box_exit(const float *o, const float *d, const float *lo, const float *hi) {
    float t_exit = INFINITY;
    for (int a = 0; a < 3; ++a) {
        float ulo = lo[a] * 4.0f - 2.0f, uhi = hi[a] * 4.0f - 2.0f;
        ulo = ulo < -1.0f ? -1.0f : ulo;
        uhi = uhi > 1.0f ? 1.0f : uhi;
        float t;
        if (d[a] > 0.0f) t = (uhi - o[a]) / d[a];
        else if (d[a] < 0.0f) t = (ulo - o[a]) / d[a];
        else continue;
        t_exit = t < t_exit ? t : t_exit;
    }
    return t_exit;
}

static void render_one(const float *o, const float *d, const float *edges, int64_t n_edges,
                       const int32_t *brick_index, int64_t M, int64_t B, const float *density,
                       const uint8_t *features, int64_t F, const uint8_t *coarse, int64_t C, float t_stop,
                       float min_weight, float *feat_out, float *opacity_out, float *depth_out) {
    const int64_t N = M * B, B1 = B + 1, V = B1 * B1 * B1, Mc = (M + C - 1) / C;
    float trans = 1.0f, opacity = 0.0f, depth = 0.0f;
    const float dnorm = sqrtf(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    for (int64_t f = 0; f < F; ++f) feat_out[f] = 0.0f;
    float x[3];
    for (int64_t k = 0; k + 1 < n_edges; ++k) {
        float lo = edges[k], hi = edges[k + 1];
        float t = 0.5f * (lo + hi);
        contract01(o, d, t, x);
        float p[3];
        int64_t c[3], b[3];
        for (int a = 0; a < 3; ++a) {
            p[a] = x[a] * (float)N;
            c[a] = clampi((int64_t)p[a], N - 1);
            b[a] = c[a] / B;
        }
        int32_t brick = brick_index[(b[0] * M + b[1]) * M + b[2]];
        if (brick < 0) {
            float ux = o[0] + t * d[0], uy = o[1] + t * d[1], uz = o[2] + t * d[2];
            if (fabsf(ux) < 1.0f && fabsf(uy) < 1.0f && fabsf(uz) < 1.0f) {
                float blo[3], bhi[3];
                int64_t cc0 = b[0] / C, cc1 = b[1] / C, cc2 = b[2] / C;
                int64_t span = coarse[(cc0 * Mc + cc1) * Mc + cc2] ? 1 : C;
                for (int a = 0; a < 3; ++a) {
                    int64_t first = (b[a] / span) * span;
                    blo[a] = (float)(first * B) / (float)N;
                    bhi[a] = (float)((first + span) * B) / (float)N;
                }
                float t_exit = box_exit(o, d, blo, bhi);
                while (k + 2 < n_edges && 0.5f * (edges[k + 1] + edges[k + 2]) < t_exit) ++k;
            }
            continue;
        }
        float fr[3];
        int64_t l[3];
        for (int a = 0; a < 3; ++a) {
            l[a] = c[a] - b[a] * B;
            fr[a] = p[a] - (float)c[a];
            fr[a] = fr[a] < 0.0f ? 0.0f : (fr[a] > 1.0f ? 1.0f : fr[a]);
        }
        const int64_t base = (int64_t)brick * V + (l[0] * B1 + l[1]) * B1 + l[2];
        const int64_t off[8] = {0, 1, B1, B1 + 1, B1 * B1, B1 * B1 + 1, B1 * B1 + B1, B1 * B1 + B1 + 1};
        float w8[8];
        for (int i = 0; i < 8; ++i) {
            float wx = (i & 4) ? fr[0] : 1.0f - fr[0];
            float wy = (i & 2) ? fr[1] : 1.0f - fr[1];
            float wz = (i & 1) ? fr[2] : 1.0f - fr[2];
            w8[i] = wx * wy * wz;
        }
        float sigma = 0.0f;
        for (int i = 0; i < 8; ++i) sigma += w8[i] * density[base + off[i]];
        if (sigma <= 0.0f) continue;
        float ds;
        if (inside(o, d, lo) && inside(o, d, hi)) {
            ds = (hi - lo) * dnorm;  /* the contraction is x01 = (u + 2) / 4 there: no contractions */
        } else {
            float a0[3], a1[3];
            contract01(o, d, lo, a0);
            contract01(o, d, hi, a1);
            float dx = a1[0] - a0[0], dy = a1[1] - a0[1], dz = a1[2] - a0[2];
            ds = 4.0f * sqrtf(dx * dx + dy * dy + dz * dz);
        }
        float tau = sigma * ds;
        float next = trans * expf(-tau);
        float w = trans - next;
        trans = next;
        if (w <= min_weight) {
            if (trans <= t_stop) break;
            continue;
        }
        opacity += w;
        depth += w * t;
        for (int i = 0; i < 8; ++i) {
            const uint8_t *q = features + (base + off[i]) * F;
            float wi = w * w8[i];
            for (int64_t f = 0; f < F; ++f) feat_out[f] += wi * (float)q[f];
        }
        if (trans <= t_stop) break;
    }
    *opacity_out = opacity;
    *depth_out = depth;
}

void baked_render(int64_t n_rays, const float *origins, const float *dirs, const float *edges, int64_t n_edges,
                  const int32_t *brick_index, int64_t M, int64_t B, const float *density, const uint8_t *features,
                  int64_t F, const uint8_t *coarse, int64_t C, float t_stop, float min_weight, float *feat_out, float *opacity_out,
                  float *depth_out, int n_threads) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(n_threads)
    for (int64_t r = 0; r < n_rays; ++r) {
        render_one(origins + 3 * r, dirs + 3 * r, edges, n_edges, brick_index, M, B, density, features, F, coarse, C,
                   t_stop, min_weight, feat_out + r * F, opacity_out + r, depth_out + r);
    }
}
