// Causal attention of a prefill chunk over the KV cache on the tensor cores (flash-attention
// style: key tiles of 64 through shared memory, online softmax, mma.sync m16n8k16 for Q·Kᵀ and
// P·V, fp32 accumulation and softmax). The decode kernel (launch_attention) gives each (row,
// head) its own block and reads the keys once per row: fine for 16 rows, but a 2048-row chunk
// would read the cache 2048 times. Here 64 query rows of one head share each key tile.
//
// Requirements (gpu_model_prefill guarantees them): every row belongs to the sequence of row 0,
// row r sits at position pos[0] + r, and its key/value are already in the cache (qkv_post ran);
// head_dim 64 or 128 (prefill_attention_supported). Same arguments and output as
// launch_attention: each row attends to positions lo..pos (sliding window honoured), scale
// 1/sqrt(head_dim), out fp16 [rows, out_stride] with zeros past heads*head_dim.
#pragma once
#include <cuda_runtime.h>

#include "decoder_kernels.cuh"

namespace lieq {

bool prefill_attention_supported(int head_dim);
cudaError_t launch_prefill_attention(const AttentionArgs& a, StepRows in, int rows, cudaStream_t s);

}  // namespace lieq
