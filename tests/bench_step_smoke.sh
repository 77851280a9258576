#!/usr/bin/env bash
# bench_step_smoke.sh WANCP: `wancp bench step --json` (and `bench attention --json`) run and
# report consistent fields:
# ratio = step_gflops / sgemm_peak_gflops, step_gflops = step_flops / step_s_median / 1e9.
# Speed is not asserted here (shared machine); the benchmark itself reports the ratio.
set -euo pipefail
out=$("$1" bench step --json --context 256 --layers 2 --vocab 1000 --steps 1)
echo "$out"
node -e '
const r = JSON.parse(process.argv[1]);
for (const k of ["sgemm_peak_gflops", "step_gflops", "ratio", "tokens_per_s", "peak_rss_mb", "step_flops"]) {
  if (!(typeof r[k] === "number" && r[k] > 0)) { console.error(`bad or missing ${k}`); process.exit(1); }
}
const near = (a, b) => Math.abs(a - b) <= 1e-3 * Math.abs(b);
if (!near(r.ratio, r.step_gflops / r.sgemm_peak_gflops)) { console.error("ratio inconsistent"); process.exit(1); }
if (!near(r.step_gflops, r.step_flops / r.step_s_median / 1e9)) { console.error("gflops inconsistent"); process.exit(1); }
// 6 x matmul params x tokens + 6 x layers x seq^2 x dim x batch, with this model:
const d = 256, f = 704, L = 2, V = 1000, T = 256;
const params = L * (4 * d * d + 3 * d * f) + V * d;
if (!near(r.step_flops, 6 * params * T + 6 * L * T * T * d)) { console.error("step_flops off the formula"); process.exit(1); }
if (typeof r.blas_core !== "string" || r.blas_core.length === 0) { console.error("no blas_core"); process.exit(1); }
' "$out"

# With --compress: the compression fraction is reported, between 0 and 1, with the ranks used.
out=$("$1" bench step --json --context 256 --layers 2 --vocab 1000 --steps 1 --compress --chunks 4)
echo "$out"
node -e '
const r = JSON.parse(process.argv[1]);
if (!(r.compressed === true && r.chunks === 4)) { console.error("compressed/chunks missing"); process.exit(1); }
if (!(r.compression_overhead > 0 && r.compression_overhead < 1)) { console.error("bad compression_overhead"); process.exit(1); }
// default: a basis per KV head (4 of d_head = 64), ranks ceil(0.02 x 64) = 2 and ceil(0.05 x 64) = 4 each
if (r.rank_k !== 8 || r.rank_v !== 16 || r.kv_bases !== 4 || r.rotation !== "givens") { console.error("ranks or rotation off"); process.exit(1); }
' "$out"

# wancp bench attention: forward and backward rates consistent with the FLOP formula
# (forward 2 x tokens^2 x heads x head_dim, backward twice that) and the peak of the same run.
out=$("$1" bench attention --json --tokens 256 --heads 4 --kv-heads 2 --head-dim 16 --reps 1)
echo "$out"
node -e '
const r = JSON.parse(process.argv[1]);
const near = (a, b) => Math.abs(a - b) <= 1e-3 * Math.abs(b);
for (const k of ["matmul_peak_gflops", "forward_s", "backward_s", "forward_gflops", "backward_gflops", "ratio"]) {
  if (!(typeof r[k] === "number" && r[k] > 0)) { console.error(`bad or missing ${k}`); process.exit(1); }
}
if (!near(r.forward_flops, 2 * 256 * 256 * 4 * 16) || !near(r.backward_flops, 2 * r.forward_flops)) {
  console.error("flops off the formula"); process.exit(1);
}
if (!near(r.forward_gflops, r.forward_flops / r.forward_s / 1e9)) { console.error("forward rate inconsistent"); process.exit(1); }
if (!near(r.backward_gflops, r.backward_flops / r.backward_s / 1e9)) { console.error("backward rate inconsistent"); process.exit(1); }
if (!near(r.ratio, r.gflops / r.matmul_peak_gflops)) { console.error("ratio inconsistent"); process.exit(1); }
if (r.attention !== "products" || r.kv_heads !== 2) { console.error("attention or kv_heads off"); process.exit(1); }
' "$out"
