/* Volume-rendering weights of packed samples and their gradient (blocknerf).
 *
 * Samples are grouped by ray: ray r owns samples [offsets[r], offsets[r + 1]). For optical
 * thickness tau_i along a ray: T_i = exp(-sum_{j<i} tau_j), w_i = T_i (1 - exp(-tau_i)).
 * Backward, for upstream gradients gw (of w) and gT (of T):
 *   dL/dtau_k = gw_k T_{k+1} - sum_{i>k} (gw_i w_i + gT_i T_i),   T_{k+1} = T_k exp(-tau_k),
 * one reverse sweep per ray. Prefix sums run in double per ray, so long rays lose nothing.
 */
#include <stdint.h>
#include <math.h>

void composite_forward(int64_t n_rays, const int64_t *offsets, const float *tau, float *trans, float *weights,
                       int n_threads) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(n_threads)
    for (int64_t r = 0; r < n_rays; ++r) {
        double acc = 0.0;
        for (int64_t i = offsets[r]; i < offsets[r + 1]; ++i) {
            double t = exp(-acc);
            acc += (double)tau[i];
            trans[i] = (float)t;
            weights[i] = (float)(t - exp(-acc));
        }
    }
}

void composite_backward(int64_t n_rays, const int64_t *offsets, const float *tau, const float *trans,
                        const float *weights, const float *grad_w, const float *grad_t, float *grad_tau,
                        int n_threads) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(n_threads)
    for (int64_t r = 0; r < n_rays; ++r) {
        double later = 0.0; /* sum over i > k of (gw_i w_i + gT_i T_i) */
        for (int64_t k = offsets[r + 1] - 1; k >= offsets[r]; --k) {
            double t_next = (double)trans[k] * exp(-(double)tau[k]);
            double gw = grad_w ? (double)grad_w[k] : 0.0;
            double gt = grad_t ? (double)grad_t[k] : 0.0;
            grad_tau[k] = (float)(gw * t_next - later);
            later += gw * (double)weights[k] + gt * (double)trans[k];
        }
    }
}
