// Embedding qforge in your own C++ program: a model written in C++ (not from the zoo) is trained,
// wrapped in a QuantSim built from an AIMET config file, fine-tuned with quantization-aware training,
// and exported (AIMET encodings + FP32 weights + quantizer settings).
//
//   g++ -O2 example_qat.cpp $(pkg-config --cflags --libs qforge) -o example_qat
//   ./example_qat CONFIG.json OUT_DIR
//
// The test suite builds this file against an installed copy of the library and runs it.
#include <qforge/data/data.hpp>
#include <qforge/nn/layers.hpp>
#include <qforge/quant/quantsim.hpp>
#include <qforge/train/trainer.hpp>

#include <cstdio>
#include <filesystem>

using namespace qforge;

// conv(1->8, 3x3) -> ReLU -> maxpool 2 -> conv(8->16, 3x3, stride 2) -> ReLU -> flatten -> linear(16*7*7 -> 10)
class TinyNet : public nn::Module {
public:
  explicit TinyNet(Generator& gen) : Module("TinyNet") {
    conv1_ = register_module("conv1", std::make_shared<nn::Conv2d>(
                                          nn::Conv2dOptions{.in_channels = 1, .out_channels = 8, .padding = {1, 1}}, gen));
    relu1_ = register_module("relu1", std::make_shared<nn::ReLU>());
    pool_ = register_module("pool", std::make_shared<nn::MaxPool2d>(nn::Pair{2, 2}));
    conv2_ = register_module("conv2", std::make_shared<nn::Conv2d>(
                                          nn::Conv2dOptions{.in_channels = 8, .out_channels = 16, .stride = {2, 2},
                                                            .padding = {1, 1}},
                                          gen));
    relu2_ = register_module("relu2", std::make_shared<nn::ReLU>());
    flatten_ = register_module("flatten", std::make_shared<nn::Flatten>());
    fc_ = register_module("fc", std::make_shared<nn::Linear>(16 * 7 * 7, 10, true, gen));
  }

protected:
  Tensor forward_tensor(const Tensor& x) override {
    Tensor h = (*pool_)((*relu1_)((*conv1_)(x)));
    h = (*relu2_)((*conv2_)(h));
    return (*fc_)((*flatten_)(h));
  }

private:
  std::shared_ptr<nn::Module> conv1_, relu1_, pool_, conv2_, relu2_, flatten_, fc_;
};

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CONFIG.json OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    data::DataOptions dopt;
    dopt.synthetic_train = 2000;
    dopt.synthetic_test = 500;
    data::DataSplits data = data::load_data("synthetic", dopt);

    Generator gen(7);
    auto model = std::make_shared<TinyNet>(gen);
    train::TrainConfig cfg;
    cfg.epochs = 1;
    cfg.optimizer = {.type = "sgd", .lr = 0.05, .momentum = 0.9};
    cfg.progress = train::ProgressMode::none;
    train::Trainer fp32(model, data.train, data.test, cfg);
    const double fp32_acc = fp32.fit().history.back().test->metrics.accuracy();

    // Trace with one batch, place quantizers by the config file, calibrate on a few training batches.
    std::vector<int64_t> first(32);
    for (int64_t i = 0; i < 32; ++i) first[i] = i;
    const Tensor sample = data.train->get_batch(first, nullptr).inputs;
    quant::QuantSimOptions qopt;
    qopt.config = argv[1];
    qopt.param_bw = 4;
    qopt.act_bw = 8;
    quant::QuantSim sim(model, {sample}, qopt);
    sim.compute_encodings([&](nn::Module& m) {
      for (int64_t b = 0; b < 8; ++b) {
        std::vector<int64_t> idx(64);
        for (int64_t i = 0; i < 64; ++i) idx[i] = b * 64 + i;
        m(data.train->get_batch(idx, nullptr).inputs);
      }
    });
    const double ptq_acc = train::evaluate(sim.model(), data.test).metrics.accuracy();

    // QAT: the same trainer on the wrapped model; the optimizer updates the FP32 shadow weights.
    cfg.optimizer = {.type = "adam", .lr = 1e-3};
    train::Trainer qat(model, data.train, data.test, cfg);
    const double qat_acc = qat.fit().history.back().test->metrics.accuracy();

    sim.export_dir(argv[2]);
    std::printf("%s", sim.listing().c_str());
    std::printf("fp32 %.2f%%  ptq W4A8 %.2f%%  qat W4A8 %.2f%%\n", fp32_acc, ptq_acc, qat_acc);
    const bool ok = std::filesystem::exists(std::filesystem::path(argv[2]) / "encodings.json") && qat_acc > 50;
    std::printf("example_qat: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example_qat: error: %s\n", e.what());
    return 1;
  }
}
