/* Multiresolution hash encoding (Instant-NGP), fused forward and backward for the CPU.
 *
 * Plain C11 + OpenMP, called through ctypes by blocknerf/model/hashgrid.py, which validates shapes,
 * dtypes, devices and contiguity before calling; check_args() here re-checks only what would make
 * the kernel touch memory out of bounds.
 *
 * Layouts (float32, C-contiguous):
 *   x          (n, 3)       positions; clamped to [0, 1] here (NaN counts as 0, so indices stay in range)
 *   table      (L, T, F)    feature tables, T a power of two, F in {1, 2, 4, 8}
 *   out        (n, L * F)   level-major rows: level 0's F features first
 *   grad_out   (n, L * F)   same layout as out
 *   grad_table (L, T, F)    dense table gradient, fully written (zeroed first) by the backward
 *
 * Level l of resolution N: p = x * (N - 1), c = min(floor(p), N - 2), frac = p - c, per axis.
 * Corner k (0..7) is vertex c + (k & 1, (k >> 1) & 1, (k >> 2) & 1) with the trilinear weight of
 * frac. Vertex (ix, iy, iz) is entry ix + iy*N + iz*N*N when N^3 <= T (dense), else entry
 * (ix ^ iy*2654435761 ^ iz*805459861) & (T - 1) in uint32 arithmetic (spatial hash).
 *
 * Design (every choice below was measured on a 2-core AMD EPYC VM, default config: L=16, F=2,
 * T=2^18, so 32 MiB of tables; see bench/hashgrid.py):
 *
 *  - Level-outer loops. A work item is one level (forward: a level and a block of samples when
 *    there are more threads than levels) and streams all its samples through that level's 2 MiB
 *    table, which then stays in L2/L3. Walking all 16 levels per chunk of samples instead keeps
 *    32 MiB hot and was ~1.6x slower.
 *  - The backward gives whole levels to threads (dynamic schedule), so the scatter-add needs no
 *    atomics and no private copies; thread-local full gradients plus a reduction was 2.5x slower.
 *  - Per level, samples go in chunks of CHUNK: a branch-free pass computes the 8 corner indices and
 *    weights of the chunk (gcc auto-vectorises it with AVX2; note the ternary min instead of fminf,
 *    which does not vectorise under -fno-finite-math-only), then a second pass gathers and blends
 *    (forward) or scatter-adds (backward), software-prefetching the table entries PREFETCH_DIST
 *    samples ahead (~2x on its own), plus the grad_out rows in the backward.
 *  - The fresh gradient buffer is advised to use transparent huge pages before it is zeroed:
 *    first touch of 32 MiB then costs 16 page faults instead of 8192.
 */

#define _DEFAULT_SOURCE /* madvise */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK 512          /* samples per pass; the corner buffers stay in L1/L2 */
#define ROW_PAD 16         /* breaks 4 KiB aliasing between the 16 corner rows */
#define PREFETCH_DIST 16   /* samples ahead for table entries */
#define PREFETCH_GRAD 32   /* samples ahead for grad_out rows (backward) */
#define PRIME_Y 2654435761u
#define PRIME_Z 805459861u

typedef struct {
    _Alignas(64) uint32_t idx[8][CHUNK + ROW_PAD];
    _Alignas(64) float w[8][CHUNK + ROW_PAD];
} corners_t;

typedef struct {
    _Alignas(64) float x[CHUNK + ROW_PAD];
    _Alignas(64) float y[CHUNK + ROW_PAD];
    _Alignas(64) float z[CHUNK + ROW_PAD];
} soa_t;

static inline float clamp01(float v)
{
    v = v > 0.0f ? v : 0.0f; /* NaN -> 0 */
    return v < 1.0f ? v : 1.0f;
}

/* Positions of samples [start, start + m) as clamped structure-of-arrays. */
static inline void load_chunk(const float *restrict x, int64_t start, int m, soa_t *restrict s)
{
    const float *p = x + 3 * start;
    for (int i = 0; i < m; ++i) {
        s->x[i] = clamp01(p[3 * i + 0]);
        s->y[i] = clamp01(p[3 * i + 1]);
        s->z[i] = clamp01(p[3 * i + 2]);
    }
}

/* Cell corner and fraction along one axis. Not fminf: it does not vectorise without
 * -ffinite-math-only; the ternary compiles to vminps (the operands are finite here). */
#define AXIS(P, C, FR, I)                                                                                      \
    float C = floorf(P);                                                                                       \
    C = C < maxc ? C : maxc;                                                                                   \
    const float FR = (P) - C;                                                                                  \
    const uint32_t I = (uint32_t)(int32_t)C

#define WEIGHTS(i)                                                                                             \
    do {                                                                                                       \
        const float gx = 1.0f - fx, gy = 1.0f - fy, gz = 1.0f - fz;                                            \
        const float w00 = gx * gy, w10 = fx * gy, w01 = gx * fy, w11 = fx * fy;                                \
        c->w[0][i] = w00 * gz;                                                                                 \
        c->w[1][i] = w10 * gz;                                                                                 \
        c->w[2][i] = w01 * gz;                                                                                 \
        c->w[3][i] = w11 * gz;                                                                                 \
        c->w[4][i] = w00 * fz;                                                                                 \
        c->w[5][i] = w10 * fz;                                                                                 \
        c->w[6][i] = w01 * fz;                                                                                 \
        c->w[7][i] = w11 * fz;                                                                                 \
    } while (0)

/* Corner indices and weights of the chunk's m samples at one level (two branch-free loops). */
static inline void level_corners(const soa_t *restrict s, int m, uint32_t res, uint32_t mask, int hashed,
                                 corners_t *restrict c)
{
    const float scale = (float)(res - 1);
    const float maxc = (float)(res - 2);
    if (hashed) {
        for (int i = 0; i < m; ++i) {
            const float px = s->x[i] * scale, py = s->y[i] * scale, pz = s->z[i] * scale;
            AXIS(px, cx, fx, ix);
            AXIS(py, cy, fy, iy);
            AXIS(pz, cz, fz, iz);
            const uint32_t hy0 = iy * PRIME_Y, hy1 = hy0 + PRIME_Y; /* (iy + 1) * PRIME_Y mod 2^32 */
            const uint32_t hz0 = iz * PRIME_Z, hz1 = hz0 + PRIME_Z;
            const uint32_t a = hy0 ^ hz0, b = hy1 ^ hz0, d = hy0 ^ hz1, e = hy1 ^ hz1, ix1 = ix + 1u;
            c->idx[0][i] = (ix ^ a) & mask;
            c->idx[1][i] = (ix1 ^ a) & mask;
            c->idx[2][i] = (ix ^ b) & mask;
            c->idx[3][i] = (ix1 ^ b) & mask;
            c->idx[4][i] = (ix ^ d) & mask;
            c->idx[5][i] = (ix1 ^ d) & mask;
            c->idx[6][i] = (ix ^ e) & mask;
            c->idx[7][i] = (ix1 ^ e) & mask;
            WEIGHTS(i);
        }
    } else {
        const uint32_t sy = res, sz = res * res; /* N^3 <= T <= 2^30: no overflow */
        for (int i = 0; i < m; ++i) {
            const float px = s->x[i] * scale, py = s->y[i] * scale, pz = s->z[i] * scale;
            AXIS(px, cx, fx, ix);
            AXIS(py, cy, fy, iy);
            AXIS(pz, cz, fz, iz);
            const uint32_t base = ix + iy * sy + iz * sz;
            c->idx[0][i] = base;
            c->idx[1][i] = base + 1u;
            c->idx[2][i] = base + sy;
            c->idx[3][i] = base + sy + 1u;
            c->idx[4][i] = base + sz;
            c->idx[5][i] = base + sz + 1u;
            c->idx[6][i] = base + sz + sy;
            c->idx[7][i] = base + sz + sy + 1u;
            WEIGHTS(i);
        }
    }
}

static inline void prefetch_read(const corners_t *restrict c, int i, const float *tab, int F)
{
    for (int k = 0; k < 8; ++k)
        __builtin_prefetch(tab + (size_t)c->idx[k][i] * F, 0, 3);
}

static inline void prefetch_write(const corners_t *restrict c, int i, const float *tab, int F)
{
    for (int k = 0; k < 8; ++k)
        __builtin_prefetch(tab + (size_t)c->idx[k][i] * F, 1, 3);
}

/* out[i * stride + f] = sum_k w[k][i] * tab[idx[k][i] * F + f]. F is a compile-time constant after
 * inlining into the switch in gather(). */
static inline void gather_f(const corners_t *restrict c, int m, const float *restrict tab, float *restrict out,
                            int64_t stride, const int F)
{
    for (int i = 0; i < m && i < PREFETCH_DIST; ++i)
        prefetch_read(c, i, tab, F);
    for (int i = 0; i < m; ++i) {
        if (i + PREFETCH_DIST < m)
            prefetch_read(c, i + PREFETCH_DIST, tab, F);
        float acc[8] = {0};
        for (int k = 0; k < 8; ++k) {
            const float *e = tab + (size_t)c->idx[k][i] * F;
            const float w = c->w[k][i];
            for (int f = 0; f < F; ++f)
                acc[f] += w * e[f];
        }
        for (int f = 0; f < F; ++f)
            out[i * stride + f] = acc[f];
    }
}

static void gather(const corners_t *restrict c, int m, const float *restrict tab, float *restrict out,
                   int64_t stride, int F)
{
    switch (F) {
    case 1: gather_f(c, m, tab, out, stride, 1); break;
    case 2: gather_f(c, m, tab, out, stride, 2); break;
    case 4: gather_f(c, m, tab, out, stride, 4); break;
    case 8: gather_f(c, m, tab, out, stride, 8); break;
    default: break; /* rejected by check_args */
    }
}

/* tab[idx[k][i] * F + f] += w[k][i] * g[i * stride + f]. Two corners of one sample can hash to the
 * same entry, so the updates stay sequential (tab is deliberately not restrict). */
static inline void scatter_f(const corners_t *restrict c, int m, float *tab, const float *restrict g,
                             int64_t stride, const int F)
{
    for (int i = 0; i < m && i < PREFETCH_DIST; ++i)
        prefetch_write(c, i, tab, F);
    for (int i = 0; i < m; ++i) {
        if (i + PREFETCH_DIST < m)
            prefetch_write(c, i + PREFETCH_DIST, tab, F);
        if (i + PREFETCH_GRAD < m)
            __builtin_prefetch(g + (i + PREFETCH_GRAD) * stride, 0, 3);
        float gv[8];
        for (int f = 0; f < F; ++f)
            gv[f] = g[i * stride + f];
        for (int k = 0; k < 8; ++k) {
            float *e = tab + (size_t)c->idx[k][i] * F;
            const float w = c->w[k][i];
            for (int f = 0; f < F; ++f)
                e[f] += w * gv[f];
        }
    }
}

static void scatter(const corners_t *restrict c, int m, float *tab, const float *restrict g, int64_t stride, int F)
{
    switch (F) {
    case 1: scatter_f(c, m, tab, g, stride, 1); break;
    case 2: scatter_f(c, m, tab, g, stride, 2); break;
    case 4: scatter_f(c, m, tab, g, stride, 4); break;
    case 8: scatter_f(c, m, tab, g, stride, 8); break;
    default: break;
    }
}

/* Transparent huge pages for the 2 MiB-aligned interior of a buffer we are about to fill (advisory,
 * errors ignored; does not reach outside [p, p + bytes)). */
static void advise_huge(void *p, size_t bytes)
{
    const uintptr_t huge = (uintptr_t)1 << 21;
    const uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    const uintptr_t e = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (e > a)
        madvise((void *)a, e - a, MADV_HUGEPAGE);
}

static int check_args(int64_t n, int32_t levels, int64_t table_size, int32_t features, const int32_t *res)
{
    if (n < 0 || levels < 1 || table_size < 1 || (table_size & (table_size - 1)) != 0 || table_size > (1LL << 30))
        return 1;
    if (features != 1 && features != 2 && features != 4 && features != 8)
        return 2;
    for (int l = 0; l < levels; ++l)
        if (res[l] < 2 || res[l] > (1 << 30))
            return 3;
    return 0;
}

/* N^3 > T. N <= 2^30 would overflow N^3, but N > 1024 already implies N^3 > 2^30 >= T. */
static inline int level_hashed(int64_t res, int64_t table_size)
{
    return res > 1024 || res * res * res > table_size;
}

/* Encode n samples. Returns 0, or a positive code for rejected arguments. */
int hashgrid_forward(const float *x, int64_t n, const float *table, int32_t levels, int64_t table_size,
                     int32_t features, const int32_t *resolutions, float *out, int32_t nthreads)
{
    const int rc = check_args(n, levels, table_size, features, resolutions);
    if (rc)
        return rc;
    const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    const int64_t stride = (int64_t)levels * features;
    const uint32_t mask = (uint32_t)(table_size - 1);
    if (nthreads < 1)
        nthreads = 1;
    /* Work items: (level, block of samples), level-major; one block per level unless there are
     * more threads than levels. */
    int64_t blocks = (2 * (int64_t)nthreads + levels - 1) / levels;
    if (blocks > nchunks)
        blocks = nchunks > 0 ? nchunks : 1;
    const int64_t chunks_per_block = (nchunks + blocks - 1) / blocks;
    const int64_t items = (int64_t)levels * blocks;
    if (nthreads > items)
        nthreads = (int32_t)items;

#pragma omp parallel num_threads(nthreads) if (n > CHUNK)
    {
        soa_t s;
        corners_t c;
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; ++item) {
            const int l = (int)(item / blocks);
            const int64_t first = (item % blocks) * chunks_per_block;
            const int64_t last = first + chunks_per_block < nchunks ? first + chunks_per_block : nchunks;
            const uint32_t res = (uint32_t)resolutions[l];
            const int hashed = level_hashed(res, table_size);
            const float *tab = table + (size_t)l * table_size * features;
            for (int64_t ch = first; ch < last; ++ch) {
                const int64_t start = ch * CHUNK;
                const int m = (int)(n - start < CHUNK ? n - start : CHUNK);
                load_chunk(x, start, m, &s);
                level_corners(&s, m, res, mask, hashed, &c);
                gather(&c, m, tab, out + start * stride + (int64_t)l * features, stride, features);
            }
        }
    }
    return 0;
}

/* Dense table gradient of sum(out * grad_out). Returns 0, or a positive code for rejected arguments. */
int hashgrid_backward(const float *x, int64_t n, const float *grad_out, int32_t levels, int64_t table_size,
                      int32_t features, const int32_t *resolutions, float *grad_table, int32_t nthreads)
{
    const int rc = check_args(n, levels, table_size, features, resolutions);
    if (rc)
        return rc;
    const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    const int64_t stride = (int64_t)levels * features;
    const uint32_t mask = (uint32_t)(table_size - 1);
    const size_t level_floats = (size_t)table_size * features;
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > levels)
        nthreads = levels; /* a level is never shared between threads: no races, no atomics */
    advise_huge(grad_table, (size_t)levels * level_floats * sizeof(float));

#pragma omp parallel num_threads(nthreads)
    {
        soa_t s;
        corners_t c;
#pragma omp for schedule(dynamic, 1)
        for (int l = 0; l < levels; ++l) {
            float *gtab = grad_table + (size_t)l * level_floats;
            memset(gtab, 0, level_floats * sizeof(float)); /* also brings the level into cache */
            const uint32_t res = (uint32_t)resolutions[l];
            const int hashed = level_hashed(res, table_size);
            for (int64_t ch = 0; ch < nchunks; ++ch) {
                const int64_t start = ch * CHUNK;
                const int m = (int)(n - start < CHUNK ? n - start : CHUNK);
                load_chunk(x, start, m, &s);
                level_corners(&s, m, res, mask, hashed, &c);
                scatter(&c, m, gtab, grad_out + start * stride + (int64_t)l * features, stride, features);
            }
        }
    }
    return 0;
}
