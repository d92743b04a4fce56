// qforge models: the built-in zoo with parameter counts.
#include "apps/cli.hpp"
#include "nn/spec.hpp"
#include "nn/zoo.hpp"

#include <iostream>

namespace qforge::apps {

int cmd_models(int argc, char** argv) {
  cxxopts::Options opts("qforge models", "List the built-in model zoo with parameter counts.");
  opts.add_options()("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& name : nn::zoo_names()) {
    nn::ZooOptions zo;
    if (name == "char-lstm") zo.vocab = 65;  // Tiny Shakespeare's vocabulary; the real size comes from the data
    auto model = nn::build_zoo_model(name, zo);
    list.push_back({{"name", name},
                    {"parameters", model->num_parameters()},
                    {"description", nn::zoo_description(name)},
                    {"input_shape", nn::zoo_input_shape(name, 1)}});
  }
  if (r.count("json")) {
    emit_json({{"models", list}});
    return 0;
  }
  std::cout << fmt::format("{:<12} {:>11}  {}\n", "model", "parameters", "description");
  for (const auto& m : list)
    std::cout << fmt::format("{:<12} {:>11}  {}\n", m["name"].get<std::string>(), m["parameters"].get<int64_t>(),
                             m["description"].get<std::string>());
  std::cout << "(char-lstm counted with the 65-character Tiny Shakespeare vocabulary)\n";
  return 0;
}

}  // namespace qforge::apps
