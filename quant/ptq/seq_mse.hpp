// Sequential MSE (SeqMSE): choose each layer's weight encodings by a grid search over candidate ranges
// that minimises the error of the layer's output (issue 17; AIMET apply_seq_mse, aimet2.md).
//
// apply_seq_mse(model, sample, batches, opt) folds the BatchNorms, wraps the model in a QuantSim with
// opt.sim, calibrates it on the batches, then visits every Conv2d/Linear (called once, integer weight
// quantizer enabled) in graph order:
//   1. x_q = the layer's input in the quantized model, the earlier layers' weights already on their
//      chosen (frozen) encodings; activation quantizers on with their calibrated encodings when
//      quantize_activations (the model as it will run), off otherwise (AIMET disables them);
//   2. target t = x_q W^T (conv: conv(x_q, W)) with the FP32 weights, no bias — AIMET's default input
//      symmetry "symqt": both sides see the same input, so the loss measures only the weight grid;
//   3. candidate i = 1..N of output channel c: the range [min_c, max_c] * i/N (symmetric grids:
//      [-max|w_c|, max|w_c|] * i/N), turned into an encoding by the quantizer's own grid rule
//      (quant::compute_encoding); candidate N is the tf (min/max) encoding, so the search never does
//      worse than tf on its data;
//   4. per channel, loss_c(i) between y_i = x_q Wq_i^T and t over all samples and positions:
//        mse   sum (y - t)^2        l1   sum |y - t|
//        sqnr  -10 log10( mean t^2 / (mean (y - t)^2 + 1e-10) )
//      and the candidate with the smallest loss wins (the first one on ties). A per-tensor weight
//      quantizer has one choice for the whole tensor: the loss summed over channels;
//   5. the chosen encodings are set and frozen in the sim (the next layers see them) and returned.
// Use: after apply_seq_mse, build the final QuantSim and call result.apply_to(sim) before
// compute_encodings, so calibration keeps the SeqMSE encodings (like AdaroundResult::apply_to).
//
// Note [SeqMSE candidate grids] The search is written over CandidateGrids: "channel c at fraction f ->
// fake-quantized row, and the encodings of the chosen fractions". per_channel_candidates() is the
// per-channel (and per-tensor) family; a blockwise family (one encoding per block of a channel, each
// block's range scaled by the channel's fraction, as AIMET's blockwise SeqMSE does) plugs in as another
// implementation without touching the search. Because a channel's output depends only on its own
// weight row, channels are independent: one layer evaluation per candidate serves every channel.
//
// Deviations from AIMET, on purpose: AIMET skips layers whose weight bitwidth is above 4; qforge
// searches any integer weight grid it is asked to (2-16 bits). LSTM/GRU weight matrices are not searched
// (their quantizers keep the calibrated encodings).
//
// Order with the other passes (Note [PTQ pass order] in apps/ptq_passes.cpp): BN fold -> CLE -> SeqMSE
// -> bias correction / AdaRound. SeqMSE chooses the grid; bias correction and AdaRound then work on
// that grid (set their options' weight_encodings = &result.param_encodings).
#pragma once

#include "quant/quantsim.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qforge::quant::ptq {

enum class SeqMseLoss { mse, l1, sqnr };
SeqMseLoss parse_seq_mse_loss(const std::string& s);  // InputError for others
const char* seq_mse_loss_name(SeqMseLoss l);

struct SeqMseOptions {
  int64_t num_candidates = 20;   // AIMET's default
  SeqMseLoss loss = SeqMseLoss::mse;
  int64_t num_samples = 256;     // samples of the batches whose layer inputs are searched over
  bool quantize_activations = true;  // see step 1 above
  std::vector<std::string> ignore;   // layer names left at their calibrated encodings
  QuantSimOptions sim;           // bitwidths, scheme, config (per-channel or per-tensor weights)
  std::function<void(const std::string&, int, int)> on_layer;  // progress (name, index, total); may be empty
};

// InputError for num_candidates < 1, num_samples < 1, float weights or weight bitwidths outside 2..16.
void validate(const SeqMseOptions& opt);

// Note [SeqMSE candidate grids].
class CandidateGrids {
public:
  virtual ~CandidateGrids() = default;
  virtual int64_t channels() const = 0;  // output channels (weight viewed as [channels, inner])
  virtual int64_t inner() const = 0;
  virtual bool shared() const = 0;  // one choice for all channels (per-tensor quantizer)
  // Row c of the weight fake-quantized on the grid of candidate `fraction` (0 < fraction <= 1).
  virtual void fake_quant_row(int64_t c, double fraction, float* out) const = 0;
  // The quantizer's encodings when channel c uses fraction[c] (shared: fraction[0]).
  virtual std::vector<Encoding> encodings(const std::vector<double>& fraction) const = 0;
};

// Candidates scaling each channel's weight range (per-channel) or the tensor's (per-tensor), made into
// encodings by quant::compute_encoding on `grid`. w: the FP32 weight, output channels on axis 0.
std::unique_ptr<CandidateGrids> per_channel_candidates(const Tensor& w, const GridSpec& grid, bool per_channel);

struct CandidateSearch {
  std::vector<int64_t> choice;        // per channel: the chosen candidate i in 1..N (fraction i/N)
  std::vector<double> loss_chosen;    // per channel, at the chosen candidate
  std::vector<double> loss_full;      // per channel, at candidate N (the tf range)
};

// The search of steps 3-4 for one layer: layer(wq) is the layer's output for fake-quantized weights wq
// (same shape as w) without bias; target the output with the FP32 weights; outputs have the channel on
// axis `channel_axis` (conv 1, linear last).
CandidateSearch search_candidates(const CandidateGrids& grids, const Shape& w_shape, int64_t num_candidates,
                                  SeqMseLoss loss, const std::function<Tensor(const Tensor&)>& layer,
                                  const Tensor& target, int64_t channel_axis);

// Per-channel loss between an output and its target (channel on channel_axis), as in step 4.
std::vector<double> channel_losses(const Tensor& y, const Tensor& target, int64_t channel_axis, SeqMseLoss loss);

struct SeqMseLayer {
  std::string name;
  bool per_channel = false;
  double loss_tf = 0;       // summed over channels, candidate N everywhere
  double loss_seq_mse = 0;  // summed over channels, the chosen candidates
  double mean_fraction = 0; // mean chosen i/N over channels
  double seconds = 0;
};

struct SeqMseResult {
  std::map<std::string, std::vector<Encoding>> param_encodings;  // "<module>.weight" -> encodings
  std::vector<SeqMseLayer> layers;
  double seconds = 0;
  SeqMseOptions options;
  // Sets and freezes the weight encodings of `sim` (which must wrap the SeqMSE'd model, same settings).
  void apply_to(QuantSim& sim) const;
  nlohmann::json to_json() const;
};

// The model is changed in place only by BN folding. batches: unlabeled input batches (single-input models).
SeqMseResult apply_seq_mse(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                           const std::vector<Tensor>& batches, const SeqMseOptions& opt = {});

}  // namespace qforge::quant::ptq
