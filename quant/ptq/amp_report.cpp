// amp_pareto.json and the Pareto plot (amp_pareto.svg) of an AMP search.
#include "quant/ptq/amp.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace qforge::quant::ptq {

nlohmann::json AmpResult::to_json() const {
  nlohmann::json j;
  j["reference_accuracy"] = reference;
  j["candidates"] = nlohmann::json::array();
  for (const auto& c : table.candidates) j["candidates"].push_back(c.name());
  j["top_candidate"] = table.candidates.at(table.top).name();
  j["layers"] = table.layers;
  j["sensitivity"] = nlohmann::json::object();
  for (size_t l = 0; l < table.layers.size(); ++l)
    for (size_t c = 0; c < table.candidates.size(); ++c)
      j["sensitivity"][table.layers[l]][table.candidates[c].name()] = table.sensitivity[l][c];
  j["costs"] = costs;
  if (!measured.is_null()) j["measured_programs"] = measured;
  j["points"] = nlohmann::json::array();
  for (const auto& p : walk.points) {
    nlohmann::json choice = nlohmann::json::object();
    for (size_t l = 0; l < p.choice.size(); ++l) choice[table.layers[l]] = table.candidates[p.choice[l]].name();
    j["points"].push_back({{"cost", p.cost}, {"accuracy", p.accuracy}, {"within_max_drop", p.within}, {"choice", choice}});
  }
  j["chosen"] = walk.chosen;
  return j;
}

// A plain SVG: cost on x, accuracy on y, the walk as a polyline, points outside max-drop red, the chosen
// point ringed green.
std::string amp_pareto_svg(const AmpResult& r) {
  const double W = 640, H = 420, ml = 70, mr = 20, mt = 30, mb = 50;
  const auto& pts = r.walk.points;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!pts.empty()) {
    x0 = x1 = pts[0].cost, y0 = y1 = pts[0].accuracy;
    for (const auto& p : pts) x0 = std::min(x0, p.cost), x1 = std::max(x1, p.cost), y0 = std::min(y0, p.accuracy),
                               y1 = std::max(y1, p.accuracy);
  }
  y1 = std::max(y1, r.reference);
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-9) y0 -= 0.5, y1 += 0.5;
  const double padx = (x1 - x0) * 0.05, pady = (y1 - y0) * 0.08;
  x0 -= padx, x1 += padx, y0 -= pady, y1 += pady;
  auto X = [&](double x) { return ml + (x - x0) / (x1 - x0) * (W - ml - mr); };
  auto Y = [&](double y) { return H - mb - (y - y0) / (y1 - y0) * (H - mt - mb); };
  const std::string unit = r.costs.value("unit", std::string("cost"));
  std::string s = fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
                              "font-family=\"sans-serif\" font-size=\"12\">\n",
                              W, H);
  s += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"white\"/>\n", W, H);
  s += fmt::format("<text x=\"{}\" y=\"18\" text-anchor=\"middle\">AMP Pareto curve (greedy walk, {} points)</text>\n",
                   W / 2, pts.size());
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", ml, H - mb, W - mr);
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", ml, mt, H - mb);
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.4g}</text>\n", X(xv), H - mb + 16, xv);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.2f}</text>\n", ml - 6, Y(yv) + 4, yv);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">cost ({})</text>\n", (ml + W - mr) / 2, H - 12, unit);
  s += fmt::format("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">accuracy (%)</text>\n",
                   (mt + H - mb) / 2, (mt + H - mb) / 2);
  std::string poly;
  for (const auto& p : pts) poly += fmt::format("{:.1f},{:.1f} ", X(p.cost), Y(p.accuracy));
  s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n", poly);
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"/>\n", X(p.cost), Y(p.accuracy),
                     p.within ? "#1f77b4" : "#d62728");
    if (static_cast<int>(i) == r.walk.chosen)
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"8\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"2\"/>\n",
                       X(p.cost), Y(p.accuracy));
  }
  s += "</svg>\n";
  return s;
}

}  // namespace qforge::quant::ptq
