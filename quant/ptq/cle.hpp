// Cross-layer equalization (aimet-compat.md §8.2; AIMET equalize_model).
//
// equalize_model(model, sample) runs, in place:
//   1. BN folding (fold_all_batch_norms) unless the caller passes earlier fold results;
//   2. every ReLU6 replaced by ReLU (ReLU6 is not positively homogeneous, so scaling would change it);
//   3. cross-layer scaling (CLS) over the sets found in the traced graph: chains of Conv2d layers
//      connected directly or through one ReLU (and folded BNs), where each output feeds only the next
//      layer; non-depthwise grouped convs and Linear layers end a chain. A chain [L0, L1, ...] is cut
//      into sets as AIMET does: if L(i+1) is depthwise and L(i+2) exists -> triplet (i, i+1, i+2), next
//      set starts at i+2; else pair (i, i+1), next starts at i+1.
//        pair:    r1_c = max|W1[c]|, r2_c = max|W2[:, c]|, s_c = sqrt(r1_c/r2_c) (1 if either is 0);
//                 W1[c] /= s_c, b1[c] /= s_c, W2[:, c] *= s_c
//        triplet: s12 = r1/cbrt(r1 r2 r3), s23 = cbrt(r1 r2 r3)/r3; W1, b1 /= s12; W2 *= s12/s23,
//                 b2 /= s23; W3[:, c] *= s23
//   4. high-bias absorption (HBA) for each consecutive (L1, L2) of a set whose L1 had a folded BN: the
//      BN's gamma, beta are divided by L1's CLS output scale; c = max(0, beta - 3|gamma|) if a ReLU sits
//      between, else c = beta; b1 -= c; b2 += (sum_hw W2) . c.
// Steps 1 and 3 leave the FP32 function unchanged (up to rounding); step 2 changes it where ReLU6
// clipped; HBA is exact where the pre-activation stays above c (AIMET's approximation), and at the
// zero-padded borders of L2 it is not exact.
// A model with no eligible set is left as it is (after steps 1-2) and the result says so.
#pragma once

#include "quant/ptq/bn_fold.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qforge::quant::ptq {

struct CleOptions {
  bool fold_bn = true;
  bool replace_relu6 = true;
  bool cross_layer_scaling = true;
  bool high_bias_absorption = true;
  // BN statistics from an earlier fold_all_batch_norms (for HBA when the model is already folded).
  const BnFoldResult* prior_folds = nullptr;
};

struct CleResult {
  BnFoldResult folds;  // statistics updated by CLS/HBA (scaled gamma/beta, beta - c), for analytical BC
  int relu6_replaced = 0;
  std::vector<std::vector<std::string>> sets;  // the CLS sets (layer names)
  int hba_pairs = 0;                           // pairs with a BN whose bias was absorbed
  std::vector<std::string> messages;           // e.g. "no eligible layer pairs"
  bool applied() const { return !sets.empty(); }
  nlohmann::json to_json() const;
};

CleResult equalize_model(nn::Module& model, const std::vector<Tensor>& sample_inputs, const CleOptions& opt = {});

// Only step 2 (all ReLU6 -> ReLU); returns how many were replaced.
int replace_relu6_with_relu(nn::Module& model, const std::vector<Tensor>& sample_inputs);

}  // namespace qforge::quant::ptq
