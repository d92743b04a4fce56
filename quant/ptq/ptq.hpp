// qforge::quant::ptq — post-training quantization passes and the quantization analyzer
// (aimet-compat.md §8). Every pass works in place on an nn::Module (a spec-built Graph for the passes
// that need an FP32 copy), takes unlabeled input batches where it needs data, and reports what it did:
//
//   bn_fold.hpp          fold_all_batch_norms, fold_all_batch_norms_to_scale (QAT), reestimate_bn_stats
//   cle.hpp              equalize_model: BN fold, ReLU6 -> ReLU, cross-layer scaling, high-bias absorption
//   bias_correction.hpp  correct_bias: empirical or analytical
//   adaround.hpp         apply_adaround: AIMET defaults, rounded weights + frozen weight encodings
//   auto_quant.hpp       auto_quant: fold -> scheme -> CLE -> AdaRound until an accuracy target is met
//   quant_analyzer.hpp   analyze: FP32/weights-only/activations-only, per-quantizer sweeps, per-layer
//                        SQNR/MSE, encodings and histograms; analysis.json + a self-contained HTML report
#pragma once

#include "quant/ptq/adaround.hpp"
#include "quant/ptq/auto_quant.hpp"
#include "quant/ptq/bias_correction.hpp"
#include "quant/ptq/bn_fold.hpp"
#include "quant/ptq/cle.hpp"
#include "quant/ptq/quant_analyzer.hpp"
