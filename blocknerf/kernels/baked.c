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
 * the weighted sums of features (in quantised units), weights (opacity) and t (depth sum), or,
 * with normalise, the weighted means (sums / opacity; 0 where the opacity is 0).
 * A sample counts while the transmittance before it exceeds t_stop (early ray termination) and when
 * its weight exceeds min_weight (as in the neural renderer, faint samples are left out), which is
 * exactly the rule of the torch reference in blocknerf/model/baked_grid.py.
 *
 * Cost per ray: the midpoints and interval widths are computed once per call. The ray's span
 * [t_in, t_out] inside the block's region (|u|_inf <= 1, a slab test) is computed once: there the
 * contraction is x01 = (u + 2) / 4, so a sample's grid position is linear in t (no divisions) and
 * ds = (hi - lo) |d|. Each sample looks up the occupancy mip first (a small array that stays in
 * cache), then the brick; inside the region an empty coarse cell or brick is an axis-aligned box
 * along the ray, and the march jumps (galloping search over the midpoints) to the first sample
 * past its exit. In the contracted shell a sample costs one contraction and one or two lookups.
 * Consecutive samples in the same brick reuse its offset. F is specialised for the common feature
 * counts so the feature accumulation unrolls.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Features are accumulated 8 channels at a time: 8 bytes widened to 8 floats and one FMA (AVX2
 * intrinsics where the compiler targets AVX2 + FMA, plain C otherwise). F that is not a multiple of
 * 8 ends with a chunk overlapping the previous one (it sums the same products, so either copy of an
 * overlapping channel is the same number): no read beyond a vertex's F bytes. */
#define MAX_CHUNKS 8
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 v8f;
static inline v8f v8_zero(void) { return _mm256_setzero_ps(); }
static inline v8f v8_fma_u8(v8f acc, float w, const uint8_t *q) {
    __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q)));
    return _mm256_fmadd_ps(_mm256_set1_ps(w), x, acc);
}
static inline void v8_store(float *out, v8f acc, float s) { _mm256_storeu_ps(out, _mm256_mul_ps(acc, _mm256_set1_ps(s))); }
#else
typedef struct { float v[8]; } v8f;
static inline v8f v8_zero(void) { v8f a = {{0}}; return a; }
static inline v8f v8_fma_u8(v8f acc, float w, const uint8_t *q) {
    for (int i = 0; i < 8; ++i) acc.v[i] += w * (float)q[i];
    return acc;
}
static inline void v8_store(float *out, v8f acc, float s) { for (int i = 0; i < 8; ++i) out[i] = acc.v[i] * s; }
#endif

/* Samples inside an empty box are skipped only when they are at least this many cells inside it,
 * so rounding never skips a sample that the plain march would evaluate in an occupied brick. */
#define SKIP_MARGIN 1e-3f

typedef struct {
    const int32_t *brick_index;
    const float *density;
    const uint8_t *features;
    const uint8_t *coarse;
    int64_t M, B, C, Mc, N, B1, V, F;
    int bs, cs;  /* log2 of B and C (both powers of two) */
    float Nf;
} Grid;

/* First index j in [k, K) with mids[j] >= t (K when none); mids is increasing and mids[k - 1] < t. */
static inline int64_t first_at_or_after(const float *mids, int64_t k, int64_t K, float t) {
    if (k >= K || mids[k] >= t) return k;
    int64_t lo = k, step = 1, hi = k + 1;  /* invariant: mids[lo] < t */
    while (hi < K && mids[hi] < t) {
        lo = hi;
        step <<= 1;
        hi = lo + step;
    }
    if (hi > K) hi = K;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mids[mid] < t) lo = mid;
        else hi = mid;
    }
    return hi;
}

/* Contracted grid position (cells, [0, N]) of a point u in normalised block coordinates. */
static inline void contract_grid(float ux, float uy, float uz, float Nf, float *p) {
    float ax = fabsf(ux), ay = fabsf(uy), az = fabsf(uz);
    float m = ax > ay ? ax : ay;
    m = m > az ? m : az;
    float s = m > 1.0f ? (2.0f - 1.0f / m) / m : 1.0f;
    float q = 0.25f * Nf;
    p[0] = (ux * s + 2.0f) * q;
    p[1] = (uy * s + 2.0f) * q;
    p[2] = (uz * s + 2.0f) * q;
    for (int a = 0; a < 3; ++a) p[a] = p[a] < 0.0f ? 0.0f : (p[a] > Nf ? Nf : p[a]);
}

/* 4 x contracted length of the segment [lo, hi] of the ray: the reference's ds. */
static inline float contracted_length(const float *o, const float *d, float lo, float hi) {
    float a[3], b[3];
    contract_grid(o[0] + lo * d[0], o[1] + lo * d[1], o[2] + lo * d[2], 1.0f, a);
    contract_grid(o[0] + hi * d[0], o[1] + hi * d[1], o[2] + hi * d[2], 1.0f, b);
    float dx = b[0] - a[0], dy = b[1] - a[1], dz = b[2] - a[2];
    return 4.0f * sqrtf(dx * dx + dy * dy + dz * dz);
}

static inline void render_one(const Grid *g, const int64_t F, const float *o, const float *d, const float *edges,
                              const float *mids, int64_t K, float t_stop, float min_weight, int normalise,
                              float *feat_out, float *opacity_out, float *depth_out) {
    const int64_t M = g->M, B = g->B, C = g->C, Mc = g->Mc, N = g->N, B1 = g->B1, V = g->V;
    const float Nf = g->Nf, q = 0.25f * Nf;
    const int32_t *brick_index = g->brick_index;
    const uint8_t *coarse = g->coarse;
    const int64_t n_chunks = F >= 8 ? (F + 7) / 8 : 0;  /* F < 8: scalar channels */
    v8f accv[MAX_CHUNKS];
    float acc[8];
    for (int64_t j = 0; j < MAX_CHUNKS; ++j) accv[j] = v8_zero();
    for (int64_t f = 0; f < 8; ++f) acc[f] = 0.0f;
    float trans = 1.0f, opacity = 0.0f, depth = 0.0f;
    const float dnorm = sqrtf(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);

    /* The ray's span inside the region |u|_inf <= 1 (empty when t_in > t_out). */
    float t_in = -INFINITY, t_out = INFINITY;
    float P0[3], Pd[3], inv[3];
    for (int a = 0; a < 3; ++a) {
        P0[a] = (o[a] + 2.0f) * q;
        Pd[a] = d[a] * q;
        if (d[a] != 0.0f) {
            float ia = 1.0f / d[a];
            float t0 = (-1.0f - o[a]) * ia, t1 = (1.0f - o[a]) * ia;
            if (t0 > t1) { float tmp = t0; t0 = t1; t1 = tmp; }
            t_in = t0 > t_in ? t0 : t_in;
            t_out = t1 < t_out ? t1 : t_out;
            inv[a] = 1.0f / Pd[a];
        } else {
            if (o[a] < -1.0f || o[a] > 1.0f) { t_in = INFINITY; t_out = -INFINITY; }
            inv[a] = INFINITY;
        }
    }

    int64_t cur_key = -1;  /* brick-cell key of the brick whose base is cached */
    int64_t cur_base = 0;
    for (int64_t k = 0; k < K; ++k) {
        const float t = mids[k];
        const int in_region = t >= t_in && t <= t_out;
        float p[3];
        if (in_region) {
            p[0] = P0[0] + t * Pd[0];
            p[1] = P0[1] + t * Pd[1];
            p[2] = P0[2] + t * Pd[2];
        } else {
            contract_grid(o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2], Nf, p);
        }
        int64_t c[3], b[3];
        for (int a = 0; a < 3; ++a) {
            int64_t ci = (int64_t)p[a];
            c[a] = ci < 0 ? 0 : (ci > N - 1 ? N - 1 : ci);
            b[a] = c[a] >> g->bs;
        }
        const int64_t key = (b[0] * M + b[1]) * M + b[2];
        if (key != cur_key) {
            int64_t span = 0;  /* bricks per axis of the empty box the sample is in (0: none) */
            const int cs = g->cs;
            if (!coarse[((b[0] >> cs) * Mc + (b[1] >> cs)) * Mc + (b[2] >> cs)]) {
                span = C;
            } else {
                int32_t brick = brick_index[key];
                if (brick < 0) span = 1;
                else { cur_key = key; cur_base = (int64_t)brick * V; }
            }
            if (span) {
                if (in_region) {
                    /* Exit of the box, clipped to the region, in grid units along p = P0 + t Pd. */
                    float t_exit = t_out;
                    for (int a = 0; a < 3; ++a) {
                        if (inv[a] == INFINITY) continue;
                        int64_t first = b[a] & ~(span - 1);
                        float face = Pd[a] > 0.0f ? (float)((first + span) * B) - SKIP_MARGIN : (float)(first * B) + SKIP_MARGIN;
                        float te = (face - P0[a]) * inv[a];
                        t_exit = te < t_exit ? te : t_exit;
                    }
                    int64_t j = first_at_or_after(mids, k + 1, K, t_exit);
                    k = j - 1;
                }
                continue;
            }
        }
        float fr[3];
        int64_t l[3];
        for (int a = 0; a < 3; ++a) {
            l[a] = c[a] - b[a] * B;
            float fa = p[a] - (float)c[a];
            fr[a] = fa < 0.0f ? 0.0f : (fa > 1.0f ? 1.0f : fa);
        }
        const int64_t base = cur_base + (l[0] * B1 + l[1]) * B1 + l[2];
        const int64_t B11 = B1 * B1;
        const int64_t off[8] = {0, 1, B1, B1 + 1, B11, B11 + 1, B11 + B1, B11 + B1 + 1};
        const float gx = 1.0f - fr[0], gy = 1.0f - fr[1], gz = 1.0f - fr[2];
        const float w8[8] = {gx * gy * gz, gx * gy * fr[2], gx * fr[1] * gz, gx * fr[1] * fr[2],
                             fr[0] * gy * gz, fr[0] * gy * fr[2], fr[0] * fr[1] * gz, fr[0] * fr[1] * fr[2]};
        const float *dens = g->density + base;
        float sigma = 0.0f;
        for (int i = 0; i < 8; ++i) sigma += w8[i] * dens[off[i]];
        if (sigma <= 0.0f) continue;
        const float lo = edges[k], hi = edges[k + 1];
        float ds;
        if (lo >= t_in && hi <= t_out) ds = (hi - lo) * dnorm;  /* x01 = (u + 2) / 4 there */
        else ds = contracted_length(o, d, lo, hi);
        float next = trans * expf(-sigma * ds);
        float w = trans - next;
        trans = next;
        if (w > min_weight) {
            opacity += w;
            depth += w * t;
            const uint8_t *fq = g->features + base * F;
            if (n_chunks) {
                for (int i = 0; i < 8; ++i) {
                    const uint8_t *qv = fq + off[i] * F;
                    const float wi = w * w8[i];
                    for (int64_t j = 0; j < n_chunks; ++j) {
                        const int64_t at = (j + 1) * 8 <= F ? j * 8 : F - 8;
                        accv[j] = v8_fma_u8(accv[j], wi, qv + at);
                    }
                }
            } else {
                for (int i = 0; i < 8; ++i) {
                    const uint8_t *qv = fq + off[i] * F;
                    const float wi = w * w8[i];
                    for (int64_t f = 0; f < F; ++f) acc[f] += wi * (float)qv[f];
                }
            }
        }
        if (trans <= t_stop) break;
    }
    float scale_out = 1.0f;
    if (normalise) {  /* the weighted means: the reference's division, 0 where nothing was hit */
        scale_out = opacity > 0.0f ? 1.0f / (opacity > 1e-10f ? opacity : 1e-10f) : 0.0f;
        depth *= scale_out;
    }
    if (n_chunks) {
        for (int64_t j = 0; j < n_chunks; ++j) v8_store(feat_out + ((j + 1) * 8 <= F ? j * 8 : F - 8), accv[j], scale_out);
    } else {
        for (int64_t f = 0; f < F; ++f) feat_out[f] = acc[f] * scale_out;
    }
    *opacity_out = opacity;
    *depth_out = depth;
}

/* F as a compile-time constant for the common feature counts (the accumulation unrolls). */
#define RENDER_RAYS(FEAT)                                                                                          \
    _Pragma("omp parallel for schedule(dynamic, 32) num_threads(n_threads)")                                      \
    for (int64_t r = 0; r < n_rays; ++r)                                                                          \
        render_one(&g, (FEAT), origins + 3 * r, dirs + 3 * r, edges, mids, K, t_stop, min_weight, normalise,     \
                   feat_out + r * (FEAT), opacity_out + r, depth_out + r);

int baked_render(int64_t n_rays, const float *origins, const float *dirs, const float *edges, int64_t n_edges,
                 const int32_t *brick_index, int64_t M, int64_t B, const float *density, const uint8_t *features,
                 int64_t F, const uint8_t *coarse, int64_t C, float t_stop, float min_weight, int normalise,
                 float *feat_out, float *opacity_out, float *depth_out, int n_threads) {
    if (F < 1 || F > 8 * MAX_CHUNKS) return -1;
    if (B < 1 || (B & (B - 1)) || C < 1 || (C & (C - 1))) return -3;
    const int64_t K = n_edges - 1;
    if (K < 1) {
        for (int64_t r = 0; r < n_rays; ++r) {
            for (int64_t f = 0; f < F; ++f) feat_out[r * F + f] = 0.0f;
            opacity_out[r] = 0.0f;
            depth_out[r] = 0.0f;
        }
        return 0;
    }
    float *mids = (float *)malloc((size_t)K * sizeof(float));
    if (!mids) return -2;
    for (int64_t k = 0; k < K; ++k) mids[k] = 0.5f * (edges[k] + edges[k + 1]);
    Grid g;
    g.brick_index = brick_index;
    g.density = density;
    g.features = features;
    g.coarse = coarse;
    g.M = M;
    g.B = B;
    g.C = C;
    g.Mc = (M + C - 1) / C;
    g.N = M * B;
    g.B1 = B + 1;
    g.V = g.B1 * g.B1 * g.B1;
    g.F = F;
    g.Nf = (float)g.N;
    g.bs = 0;
    while ((1 << g.bs) < B) ++g.bs;
    g.cs = 0;
    while ((1 << g.cs) < C) ++g.cs;
    if (n_threads < 1) n_threads = 1;
    switch (F) {
        case 15: RENDER_RAYS(15) break;
        case 16: RENDER_RAYS(16) break;
        case 8: RENDER_RAYS(8) break;
        default: RENDER_RAYS(F) break;
    }
    free(mids);
    return 0;
}
