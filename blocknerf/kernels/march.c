/* Ray marching through an occupancy grid over the contracted cube (blocknerf).
 *
 * Rays are given in normalised block coordinates (origin o, direction d, world parameter t).
 * All rays share one step schedule: interval edges t_0 < t_1 < ... < t_K. In interval k the
 * sample sits at t = t_k + jitter * (t_{k+1} - t_k); it is emitted when the occupancy cell of its
 * contracted position is set. Each sample also gets ds, the length of its interval in contracted
 * coordinates (the [-2, 2] cube), along which density is integrated. march_count counts samples
 * per ray, march_fill writes them at the given offsets; both make identical decisions.
 *
 * Contraction (L-infinity mip-NeRF 360): m = max|u_i|; c = u if m <= 1 else (2 - 1/m) u / m;
 * x01 = (c + 2) / 4. Occupancy layout: occ[(ix * G + iy) * G + iz].
 */
#include <stdint.h>
#include <stddef.h>
#include <math.h>

static inline void contract01(float ux, float uy, float uz, float *x) {
    float ax = ux < 0 ? -ux : ux, ay = uy < 0 ? -uy : uy, az = uz < 0 ? -uz : uz;
    float m = ax > ay ? ax : ay;
    m = m > az ? m : az;
    if (m > 1.0f) {
        float s = (2.0f - 1.0f / m) / m;
        ux *= s; uy *= s; uz *= s;
    }
    x[0] = (ux + 2.0f) * 0.25f;
    x[1] = (uy + 2.0f) * 0.25f;
    x[2] = (uz + 2.0f) * 0.25f;
    for (int i = 0; i < 3; ++i) x[i] = x[i] < 0.0f ? 0.0f : (x[i] > 1.0f ? 1.0f : x[i]);
}

static inline int64_t cell_of(const float *x, int64_t G) {
    int64_t ix = (int64_t)(x[0] * (float)G), iy = (int64_t)(x[1] * (float)G), iz = (int64_t)(x[2] * (float)G);
    ix = ix >= G ? G - 1 : ix; iy = iy >= G ? G - 1 : iy; iz = iz >= G ? G - 1 : iz;
    return (ix * G + iy) * G + iz;
}

/* March one ray; when out != NULL write samples starting at out index `base`. Returns the count. */
static int64_t march_one(const float *o, const float *d, const float *edges, int64_t n_edges, float jitter,
                         const uint8_t *occ, int64_t G, int64_t max_per_ray, int64_t ray, int64_t base,
                         int64_t *ray_out, float *t_out, float *ds_out, float *x_out) {
    int64_t n = 0;
    float x[3];
    for (int64_t k = 0; k + 1 < n_edges && n < max_per_ray; ++k) {
        float lo = edges[k], hi = edges[k + 1];
        float t = lo + jitter * (hi - lo);
        contract01(o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2], x);
        if (!occ[cell_of(x, G)]) continue;
        if (ray_out) {
            int64_t j = base + n;
            float a[3], b[3];
            contract01(o[0] + lo * d[0], o[1] + lo * d[1], o[2] + lo * d[2], a);
            contract01(o[0] + hi * d[0], o[1] + hi * d[1], o[2] + hi * d[2], b);
            float dx = b[0] - a[0], dy = b[1] - a[1], dz = b[2] - a[2];
            ray_out[j] = ray;
            t_out[j] = t;
            ds_out[j] = 4.0f * sqrtf(dx * dx + dy * dy + dz * dz);
            x_out[3 * j] = x[0]; x_out[3 * j + 1] = x[1]; x_out[3 * j + 2] = x[2];
        }
        ++n;
    }
    return n;
}

void march_count(int64_t n_rays, const float *origins, const float *dirs, const float *edges, int64_t n_edges,
                 const float *jitter, const uint8_t *occ, int64_t G, int64_t max_per_ray, int64_t *counts,
                 int n_threads) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(n_threads)
    for (int64_t r = 0; r < n_rays; ++r) {
        float j = jitter ? jitter[r] : 0.5f;
        counts[r] = march_one(origins + 3 * r, dirs + 3 * r, edges, n_edges, j, occ, G, max_per_ray, r, 0,
                              NULL, NULL, NULL, NULL);
    }
}

void march_fill(int64_t n_rays, const float *origins, const float *dirs, const float *edges, int64_t n_edges,
                const float *jitter, const uint8_t *occ, int64_t G, int64_t max_per_ray, const int64_t *offsets,
                int64_t *ray_out, float *t_out, float *ds_out, float *x_out, int n_threads) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(n_threads)
    for (int64_t r = 0; r < n_rays; ++r) {
        float j = jitter ? jitter[r] : 0.5f;
        march_one(origins + 3 * r, dirs + 3 * r, edges, n_edges, j, occ, G, max_per_ray, r, offsets[r],
                  ray_out, t_out, ds_out, x_out);
    }
}
