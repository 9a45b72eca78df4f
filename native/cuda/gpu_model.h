// A whole decoder model on one CUDA GPU: weights uploaded once, KV caches on the device, and a
// decode step for up to kGpuMaxRows token rows (batch 1..16 sequences, or prefill chunks).
//
// Plain C++ interface (no CUDA types), so the Node binding compiles with or without CUDA:
// gpu_model.cu implements it when the build has CUDA, gpu_model_stub.cpp otherwise (every
// function throws "built without CUDA"). docs/gpu.md describes the layout and the math.
//
// Precision: weights fp16 (dense) or packed low-bit (repacked at load into the qgemv layout,
// qgemv.cuh); activations into each linear fp16; linear outputs, the residual stream, norms,
// RoPE, softmax and attention accumulation fp32; KV cache fp16.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/packed_format.h"

namespace lieq {

constexpr int kGpuMaxRows = 16;  // token rows one step processes (the qgemv batch limit)
constexpr int kGpuPrefillRows = 2048;     // default prefill chunk (rows through the GEMM at once)
constexpr int kGpuPrefillMaxRows = 4096;

// One linear as the host holds it (pointers valid during the call that takes it).
struct GpuLinearHost {
  bool packed = false;
  size_t out = 0, in = 0;          // logical shape; packed.in may be up to 31 wider (zero columns)
  const float* dense = nullptr;    // [out, in] f32 when !packed
  PackedMatrix packed_w;           // when packed
  const float* bias = nullptr;     // [out] or null
};

struct GpuLayerHost {
  const float* input_norm = nullptr;  // [hidden]
  const float* post_norm = nullptr;   // [hidden]
  const float* q_norm = nullptr;      // [head_dim] (Qwen3) or null
  const float* k_norm = nullptr;
  GpuLinearHost q, k, v, o, gate, up, down;
};

struct GpuModelConfig {
  int hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0, layers = 0, vocab = 0;
  float eps = 1e-5f;
  int window = 0;        // sliding window (0 = full causal attention)
  int max_seqs = 1;      // sequences with their own KV cache
  int max_context = 0;   // positions per sequence
};

struct GpuModelStats {
  std::string device_name;
  size_t device_bytes = 0;       // everything this model allocated on the device
  size_t weight_bytes = 0;       // bytes of weights one step reads (linears, norms, head)
  int fused_qkv_layers = 0;      // layers whose q/k/v run as one launch
  int fused_gate_up_layers = 0;  // layers whose gate/up run as one launch
};

// "" when a CUDA device is usable, else why not (no driver, no device, built without CUDA).
std::string gpu_unavailable_reason();

class GpuModel;

struct GpuModelDeleter {
  void operator()(GpuModel* m) const;
};
using GpuModelPtr = std::unique_ptr<GpuModel, GpuModelDeleter>;

// rope_cos/sin f32 [max_context, head_dim/2] (lib/runtime/rope.ts tables, rope scaling applied);
// embedding f32 [vocab, hidden]; final_norm f32 [hidden]. Throws std::runtime_error (CUDA
// failure, out of memory) or std::invalid_argument (bad shape).
GpuModelPtr gpu_model_create(const GpuModelConfig& cfg, const float* rope_cos, const float* rope_sin,
                             const float* embedding, const float* final_norm);
// Upload decoder layer `index` (every layer must be set before the first step). q/k/v (and
// gate/up) that share a kind, bit width, group and width are concatenated into one linear.
void gpu_model_set_layer(GpuModel* m, int index, const GpuLayerHost& layer);
// The LM head; tied_to_embedding: reuse the uploaded embedding (fp16) instead of `head`.
void gpu_model_set_head(GpuModel* m, const GpuLinearHost& head, bool tied_to_embedding);
// Layer `to` becomes a device-side copy of layer `from` (already uploaded): same weights in its
// own memory, so nothing is shared through the L2. For benchmarks of random models whose layers
// repeat one host layer: a device copy instead of a second repack and upload.
void gpu_model_copy_layer(GpuModel* m, int from, int to);

// One step over `rows` (1..kGpuMaxRows) token rows: row r is token ids[r] of sequence seqs[r] at
// position pos[r]. Its key/value are stored at that position, and it attends to positions
// 0..pos[r] of its sequence (rows of one sequence in one step must have increasing positions;
// earlier positions must have been stored by earlier steps or earlier rows). logits (host f32
// [rows, vocab]) may be null. use_graph: replay a CUDA graph captured for this row count (the
// first call per row count captures it). Blocks until the device is done.
void gpu_model_step(GpuModel* m, int rows, const int32_t* ids, const int32_t* seqs, const int32_t* pos,
                    float* logits, bool use_graph);

// Prefill of one sequence: tokens ids[0..n) at positions pos0.. of sequence `seq`, in chunks of
// up to chunk_rows (17..kGpuPrefillMaxRows) rows; linears of chunks > 16 rows run on the
// tensor-core GEMM (qgemm_prefill.cuh), a chunk's rows attend causally to the cache and to each
// other, and the keys/values are stored, so decode steps continue after it. logits (host f32
// [vocab], may be null): the last token's. Scratch for one chunk is allocated on first use.
// Blocks until the device is done.
void gpu_model_prefill(GpuModel* m, int n, const int32_t* ids, int seq, int pos0, float* logits,
                       int chunk_rows = kGpuPrefillRows);

GpuModelStats gpu_model_stats(const GpuModel* m);

// y f32 [rows, out] = x f32 [rows, in] · Wᵀ (+ bias) through the same upload path and kernels as
// the model's linears (x rounded to fp16 first, as in the model). For kernel tests.
void gpu_linear_apply(const GpuLinearHost& lin, const float* x, int rows, float* y);

}  // namespace lieq
