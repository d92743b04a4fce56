// qforge::quant::ptq — post-training quantization passes and the quantization analyzer
// (aimet-compat.md §8). Every pass works in place on an nn::Module (a spec-built Graph for the passes
// that need an FP32 copy), takes unlabeled input batches where it needs data, and reports what it did:
//
//   bn_fold.hpp          fold_all_batch_norms, fold_all_batch_norms_to_scale (QAT), reestimate_bn_stats
//   cle.hpp              equalize_model: BN fold, ReLU6 -> ReLU, cross-layer scaling, high-bias absorption
//   bias_correction.hpp  correct_bias: empirical or analytical
//   adaround.hpp         apply_adaround: AIMET defaults, rounded weights + frozen weight encodings
//   seq_mse.hpp          apply_seq_mse: weight encodings by a search over candidate ranges, frozen
//   auto_quant.hpp       auto_quant: fold -> scheme -> CLE -> AdaRound until an accuracy target is met
//   quant_analyzer.hpp   analyze: FP32/weights-only/activations-only, per-quantizer sweeps, per-layer
//                        SQNR/MSE, encodings and histograms; analysis.json + a self-contained HTML report
//
// Typical use (what `qforge quantize` does with its flags; batches are unlabeled input batches):
//   validate_passes({.cle = ..., .bias_correction = ..., .adaround = ..., .param_bw = ...});
//   reestimate_bn_stats(*model, batches, n);                   // --bn-reestimate N (before folding)
//   auto cle = equalize_model(*model, sample);                  // --cle (folds BNs first)
//   correct_bias(model, sample, batches, {.mode = ..., .sim = opts, .bn_folds = &cle.folds});
//   auto ar = apply_adaround(model, sample, batches, {.sim = opts});   // --adaround
//   auto sim = make_calibrated_sim(model, sample, batches, opts, opts.scheme, &ar);
//   ar.save_encodings(dir / "adaround.encodings");
#pragma once

#include "quant/ptq/adaround.hpp"
#include "quant/ptq/auto_quant.hpp"
#include "quant/ptq/bias_correction.hpp"
#include "quant/ptq/bn_fold.hpp"
#include "quant/ptq/cle.hpp"
#include "quant/ptq/quant_analyzer.hpp"
#include "quant/ptq/seq_mse.hpp"
