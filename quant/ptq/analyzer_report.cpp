// The analyzer's HTML page: one self-contained file, inline SVG plots, no scripts or external resources.
#include "quant/ptq/quant_analyzer.hpp"

#include <cmath>
#include <sstream>

namespace qforge::quant::ptq {

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

// Horizontal bar chart: one row per label, up to two series (colours), values in [0, vmax].
std::string bars(const std::vector<std::string>& labels, const std::vector<std::vector<double>>& series,
                 const std::vector<std::string>& names, double vmax, const std::string& unit, double ref = NAN) {
  const int row = 16 * static_cast<int>(series.size()) + 6, left = 230, width = 460;
  const int h = static_cast<int>(labels.size()) * row + 40;
  static const char* colours[] = {"#3b7dd8", "#e08a2c", "#4caf50"};
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 80 << "' height='" << h
    << "' font-family='sans-serif' font-size='11'>";
  for (size_t k = 0; k < names.size(); ++k)
    s << "<rect x='" << left + 160 * k << "' y='4' width='10' height='10' fill='" << colours[k] << "'/><text x='"
      << left + 14 + 160 * k << "' y='13'>" << esc(names[k]) << "</text>";
  for (size_t i = 0; i < labels.size(); ++i) {
    const int y = 24 + static_cast<int>(i) * row;
    s << "<text x='" << left - 6 << "' y='" << y + row / 2 + 3 << "' text-anchor='end'>" << esc(labels[i]) << "</text>";
    for (size_t k = 0; k < series.size(); ++k) {
      const double v = series[k][i];
      if (!std::isfinite(v) || v < 0) continue;
      const double w = vmax > 0 ? std::min(1.0, v / vmax) * width : 0;
      s << "<rect x='" << left << "' y='" << y + 16 * k << "' width='" << w << "' height='13' fill='" << colours[k]
        << "'/><text x='" << left + w + 4 << "' y='" << y + 16 * k + 11 << "'>" << fmt::format("{:.2f}{}", v, unit) << "</text>";
    }
  }
  if (std::isfinite(ref) && vmax > 0) {
    const double x = left + std::min(1.0, ref / vmax) * width;
    s << "<line x1='" << x << "' y1='20' x2='" << x << "' y2='" << h - 4 << "' stroke='#c00' stroke-dasharray='4,3'/>";
  }
  s << "</svg>";
  return s.str();
}

std::string histogram(const QuantizerAnalysis& q) {
  const int w = 360, h = 120, pad = 4;
  int64_t mx = 1;
  for (auto c : q.hist) mx = std::max(mx, c);
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w + 2 * pad << "' height='" << h + 18
    << "' font-family='sans-serif' font-size='10'>";
  const double bw = static_cast<double>(w) / q.hist.size();
  for (size_t i = 0; i < q.hist.size(); ++i) {
    // sqrt scale so that tails stay visible
    const double bh = std::sqrt(static_cast<double>(q.hist[i]) / mx) * h;
    s << "<rect x='" << pad + i * bw << "' y='" << h - bh << "' width='" << std::max(bw - 0.5, 0.5) << "' height='" << bh
      << "' fill='#7a9cc6'/>";
  }
  auto xpos = [&](double v) { return pad + (v - q.hist_lo) / (q.hist_hi - q.hist_lo) * w; };
  for (const auto& e : q.encodings) {
    if (e.is_float) continue;
    for (double v : {e.min, e.max})
      s << "<line x1='" << xpos(v) << "' y1='0' x2='" << xpos(v) << "' y2='" << h << "' stroke='#c00' stroke-width='1'/>";
    if (q.encodings.size() > 1) break;  // per-channel: the first channel's range only
  }
  s << "<text x='" << pad << "' y='" << h + 14 << "'>" << fmt::format("{:.4g}", q.hist_lo) << "</text><text x='"
    << pad + w << "' y='" << h + 14 << "' text-anchor='end'>" << fmt::format("{:.4g}", q.hist_hi) << "</text></svg>";
  return s.str();
}

std::string enc_text(const QuantizerAnalysis& q) {
  if (q.encodings.empty()) return "no encoding";
  const auto& e = q.encodings[0];
  if (e.is_float) return fmt::format("float{}", e.bitwidth);
  std::string t = fmt::format("{}-bit {} [{:.5g}, {:.5g}] scale {:.5g} offset {}", e.bitwidth,
                              e.symmetric ? "symmetric" : "asymmetric", e.min, e.max, e.delta, e.offset);
  if (q.encodings.size() > 1) t += fmt::format(" (channel 0 of {})", q.encodings.size());
  return t;
}

}  // namespace

std::string Analysis::to_html() const {
  std::ostringstream h;
  h << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>qforge quantization analysis</title><style>"
       "body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f0f0f0}"
       ".q{display:inline-block;vertical-align:top;margin:6px 12px 12px 0;font-size:12px}</style></head><body>";
  h << "<h1>Quantization analysis</h1><p>" << esc(options.dump()) << "</p>";
  h << "<h2>Accuracy</h2><table><tr><th>FP32</th><th>weights only</th><th>activations only</th><th>quantized</th></tr><tr>"
    << fmt::format("<td>{:.2f}</td><td>{:.2f}</td><td>{:.2f}</td><td>{:.2f}</td>", fp32, weights_only, activations_only,
                   quantized)
    << "</tr></table>";
  std::vector<std::string> labels;
  std::vector<double> only, without;
  for (const auto& q : quantizers)
    if (q.acc_only_this >= 0) {
      labels.push_back(q.name);
      only.push_back(q.acc_only_this);
      without.push_back(q.acc_without_this);
    }
  if (!labels.empty()) {
    double vmax = fp32;
    for (double v : only) vmax = std::max(vmax, v);
    h << "<h2>Per-quantizer sweeps</h2><p>Accuracy with only this quantizer enabled, and with only this quantizer "
         "disabled (all others enabled). Dashed line: FP32.</p>"
      << bars(labels, {only, without}, {"only this one enabled", "only this one disabled"}, vmax, "", fp32);
  }
  if (!layers.empty()) {
    std::vector<std::string> ln;
    std::vector<double> sq;
    double vmax = 1;
    for (const auto& l : layers) {
      ln.push_back(l.name + " (" + l.type + ")");
      sq.push_back(std::isfinite(l.sqnr_db) ? l.sqnr_db : -1);
      if (std::isfinite(l.sqnr_db)) vmax = std::max(vmax, l.sqnr_db);
    }
    h << "<h2>Per-layer SQNR against FP32</h2>" << bars(ln, {sq}, {"SQNR (dB)"}, vmax, " dB");
    h << "<table><tr><th>layer</th><th>type</th><th>MSE</th><th>SQNR (dB)</th></tr>";
    for (const auto& l : layers)
      h << "<tr><td>" << esc(l.name) << "</td><td>" << esc(l.type) << "</td><td>" << fmt::format("{:.4g}", l.mse)
        << "</td><td>" << (std::isfinite(l.sqnr_db) ? fmt::format("{:.2f}", l.sqnr_db) : "exact") << "</td></tr>";
    h << "</table>";
  }
  if (!block_scales.empty()) {
    h << "<h2>Block scales (blockwise / LPBQ weights)</h2><table><tr><th>quantizer</th><th>block size</th>"
         "<th>blocks</th><th>scale min / median / max</th><th>mean max/min block scale per channel</th>"
         "<th>LPBQ multipliers 1..N (counts)</th></tr>";
    for (const auto& b : block_scales) {
      std::string hist;
      if (b.contains("multiplier_histogram"))
        for (const auto& c : b["multiplier_histogram"]) hist += (hist.empty() ? "" : " ") + std::to_string(c.get<int64_t>());
      h << "<tr><td>" << esc(b["name"].get<std::string>()) << "</td><td>" << b["block_size"].get<int64_t>() << "</td><td>"
        << b["blocks"].get<int64_t>() << "</td><td>"
        << fmt::format("{:.3g} / {:.3g} / {:.3g}", b["scale_min"].get<double>(), b["scale_median"].get<double>(),
                       b["scale_max"].get<double>())
        << "</td><td>"
        << (b.contains("mean_channel_spread") ? fmt::format("{:.2f}", b["mean_channel_spread"].get<double>()) : "")
        << "</td><td>" << esc(hist) << "</td></tr>";
    }
    h << "</table>";
  }
  h << "<h2>Quantizers: encodings and calibration histograms</h2><p>Histogram of the FP32 values each quantizer sees "
       "(square-root count scale); red lines: the encoding's min and max.</p>";
  for (const auto& q : quantizers) {
    h << "<div class='q'><b>" << esc(q.name) << "</b> (" << esc(q.kind) << (q.enabled ? "" : ", disabled") << ")<br>"
      << esc(enc_text(q)) << "<br>";
    if (!q.hist.empty()) h << histogram(q);
    h << "</div>";
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace qforge::quant::ptq
