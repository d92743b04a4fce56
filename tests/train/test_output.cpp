// Output discipline (train/output.hpp), checkpoint-state confinement (train/checkpoint.hpp) and the
// numerical-fault outcomes of the trainer (Note [Divergence]): regression tests for issue 12.
#include "data/data.hpp"
#include "engine/autograd.hpp"
#include "engine/file_io.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"
#include "train/checkpoint.hpp"
#include "train/output.hpp"
#include "train/train.hpp"

#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <unistd.h>

using namespace qforge;
using namespace qforge::train;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using testing::temp_dir;

void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

size_t count_entries(const fs::path& d) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(d)) ++n;
  return n;
}

std::shared_ptr<nn::Graph> mlp(uint64_t seed) {
  json spec = {{"nodes",
                {{{"name", "flatten"}, {"type", "Flatten"}},
                 {{"name", "fc1"}, {"type", "Linear"}, {"args", {{"in_features", 784}, {"out_features", 16}}}},
                 {{"name", "relu"}, {"type", "ReLU"}},
                 {{"name", "fc2"}, {"type", "Linear"}, {"args", {{"in_features", 16}, {"out_features", 10}}}}}}};
  return nn::build_model(spec, {.seed = seed});
}

TrainConfig config(const fs::path& out) {
  TrainConfig c;
  c.epochs = 1;
  c.batch_size = 32;
  c.optimizer = {.type = "sgd", .lr = 0.05};
  c.out_dir = out;
  c.progress = ProgressMode::none;
  c.checkpoint_every = 2;
  return c;
}

}  // namespace

TEST_CASE("OutputDir: a new output appears only at publish, with a marker; a failure removes only its temporary") {
  const fs::path root = temp_dir("publish");
  const fs::path out = root / "out";
  {
    OutputDir od(out, "bundle");
    CHECK(od.staging() != out);
    write(od.staging() / "a.txt", "new");
    CHECK_FALSE(fs::exists(out));
    CHECK(fs::exists(root / "out.qforge-lock"));
    od.publish();
    CHECK(od.staging() == fs::absolute(out));
  }
  CHECK(output_kind(out) == "bundle");
  CHECK(fs::exists(out / "a.txt"));
  CHECK(count_entries(root) == 1);  // no temporary, no lock file left
  {
    OutputDir od(root / "never", "bundle");
    write(od.staging() / "b.txt", "x");
  }  // not published: the temporary is gone, nothing at --out
  CHECK_FALSE(fs::exists(root / "never"));
  CHECK(count_entries(root) == 1);
  fs::remove_all(root);
}

TEST_CASE("OutputDir: an existing non-qforge directory, file or link is refused, even with force, and left intact") {
  const fs::path root = temp_dir("refuse");
  fs::create_directories(root / "user");
  write(root / "user" / "precious.txt", "keep me");
  write(root / "file", "keep me too");
  fs::create_directory_symlink(root / "user", root / "link");
  for (const char* name : {"user", "file", "link"})
    for (bool force : {false, true}) CHECK_THROWS_AS(OutputDir(root / name, "bundle", OutputOptions(force)), InputError);
  CHECK(read_file(root / "user" / "precious.txt") == "keep me");
  CHECK(read_file(root / "file") == "keep me too");
  // The current directory as --out (an absolute path to a non-qforge directory): refused.
  const fs::path cwd = fs::current_path();
  fs::current_path(root / "user");
  CHECK_THROWS_AS(OutputDir(".", "bundle", OutputOptions(true)), InputError);
  fs::current_path(cwd);
  CHECK(read_file(root / "user" / "precious.txt") == "keep me");
  fs::remove_all(root);
}

TEST_CASE("OutputDir: force replaces a previous qforge output of the same kind as a whole, never another kind") {
  const fs::path root = temp_dir("force");
  const fs::path out = root / "q";
  {
    OutputDir od(out, "quantized");
    write(od.staging() / "old.txt", "old");
    write(od.staging() / "shared.txt", "old");
    od.publish();
  }
  CHECK_THROWS_AS(OutputDir(out, "quantized"), InputError);               // exists: needs force
  CHECK_THROWS_AS(OutputDir(out, "bundle", OutputOptions(true)), InputError);  // another kind
  {
    OutputDir od(out, "quantized", OutputOptions(true));
    write(od.staging() / "shared.txt", "new");
    od.publish();
  }
  CHECK_FALSE(fs::exists(out / "old.txt"));  // replaced as a set, no mix of old and new files
  CHECK(read_file(out / "shared.txt") == "new");
  CHECK(count_entries(root) == 1);
  // An empty directory (e.g. made by the user beforehand) is simply used.
  fs::create_directory(root / "empty");
  {
    OutputDir od(root / "empty", "analysis");
    od.publish();
  }
  CHECK(output_kind(root / "empty") == "analysis");
  // The working directory (even an empty one) or a directory containing it is never replaced.
  fs::create_directory(root / "cwd");
  const fs::path cwd = fs::current_path();
  fs::current_path(root / "cwd");
  CHECK_THROWS_AS(OutputDir(".", "analysis"), InputError);
  CHECK_THROWS_AS(OutputDir("..", "analysis", OutputOptions(true)), InputError);
  fs::current_path(cwd);
  fs::remove_all(root);
}

TEST_CASE("OutputDir: temporaries of a killed writer of the same --out are removed; other names are not") {
  const fs::path root = temp_dir("stale");
  fs::create_directories(root / "out.qforge-tmp-999999999-0badf00d");  // no such pid
  fs::create_directories(root / "out.qforge-tmp-user-notes");         // not the pattern
  fs::create_directories(root / fmt::format("out.qforge-tmp-{}-0badf00d", ::getppid()));  // a live process
  {
    OutputDir od(root / "out", "bundle");
    od.publish();
  }
  CHECK_FALSE(fs::exists(root / "out.qforge-tmp-999999999-0badf00d"));
  CHECK(fs::exists(root / "out.qforge-tmp-user-notes"));
  CHECK(fs::exists(root / fmt::format("out.qforge-tmp-{}-0badf00d", ::getppid())));
  fs::remove_all(root);
}

TEST_CASE("OutputDir: a second writer of the same --out is refused while the first holds the lock") {
  const fs::path root = temp_dir("lock");
  OutputDir first(root / "b", "bundle");
  CHECK_THROWS_WITH_AS(OutputDir(root / "b", "bundle", OutputOptions(true)), doctest::Contains("another qforge command"),
                       InputError);
  first.publish();
  fs::remove_all(root);
}

TEST_CASE("OutputDir: the output may not overlap an input") {
  const fs::path root = temp_dir("overlap");
  fs::create_directories(root / "model" / "sub");
  CHECK_THROWS_AS(OutputDir(root / "model", "bundle", OutputOptions(false, {root / "model"})), InputError);
  CHECK_THROWS_AS(OutputDir(root / "model" / "inner", "bundle", OutputOptions(false, {root / "model"})), InputError);
  CHECK_THROWS_AS(OutputDir(root, "bundle", OutputOptions(true, {root / "model"})), InputError);
  CHECK_NOTHROW(check_no_overlap("a", root / "model2", "b", root / "model"));
  fs::remove_all(root);
}

TEST_CASE("single-file outputs: symbolic links and special files are refused, not replaced") {
  const fs::path root = temp_dir("single");
  write(root / "target", "keep");
  fs::create_symlink(root / "target", root / "link");
  CHECK_THROWS_AS(check_single_file_target("--save-logits", root / "link"), InputError);
  CHECK_THROWS_AS(check_single_file_target("--save-logits", "/dev/null"), InputError);
  CHECK_THROWS_AS(check_single_file_target("--save-logits", root / "missing-dir" / "x"), InputError);
  CHECK_NOTHROW(check_single_file_target("--save-logits", root / "new.safetensors"));
  CHECK(read_file(root / "target") == "keep");
  fs::remove_all(root);
}

TEST_CASE("checkpoint state: file names are confined to the checkpoint directory") {
  const fs::path dir = "/tmp/ck";
  auto state = [](const std::string& model_file) {
    return json{{"format", "qforge-checkpoint"}, {"version", 1},   {"step", 3},       {"model_file", model_file},
                {"optimizer_file", "optimizer-3.safetensors"}, {"optimizer", json::object()}, {"trainer", json::object()}}
        .dump();
  };
  CHECK(parse_checkpoint_state(state("model-3.safetensors"), dir).model_file == "model-3.safetensors");
  for (const char* bad : {"/etc/passwd", "../model-3.safetensors", "../../victim", "sub/model-3.safetensors",
                          "model-3.safetensors/..", "weights.safetensors", "model-.safetensors", ""})
    CHECK_THROWS_AS(parse_checkpoint_state(state(bad), dir), InputError);
  CHECK_THROWS_AS(parse_checkpoint_state("{", dir), InputError);
  CHECK_THROWS_AS(parse_checkpoint_state("[1]", dir), InputError);
  CHECK_THROWS_AS(parse_checkpoint_state(R"({"format":"qforge-checkpoint","version":1,"step":-1})", dir), InputError);
}

TEST_CASE("checkpoint state: a step that is a float or past int64 is an input error (fuzz finding)") {
  // tests/fuzz/regressions/checkpoint_state/step_float_cast_overflow: 1184467440737095516152 parses as a
  // float; converting it to int64 was undefined behaviour (UBSan float-cast-overflow).
  const fs::path dir = "/tmp/ck";
  for (const char* step : {"1184467440737095516152", "3.5", "1e300", "18446744073709551615", "\"3\"", "null"}) {
    CAPTURE(step);
    const std::string text = std::string(R"({"format":"qforge-checkpoint","version":1,"step":)") + step +
                             R"(,"model_file":"model-3.safetensors","optimizer_file":"optimizer-3.safetensors",)"
                             R"("optimizer":{},"trainer":{}})";
    CHECK_THROWS_WITH_AS(parse_checkpoint_state(text, dir), doctest::Contains("step"), InputError);
  }
}

TEST_CASE("checkpoint rotation never deletes files a tampered state.json names outside the directory") {
  const fs::path root = temp_dir("rotation");
  write(root / "victim.txt", "keep");
  fs::create_directories(root / "run" / "checkpoint");
  const fs::path ck = root / "run" / "checkpoint";
  write(ck / "state.json", json{{"format", "qforge-checkpoint"}, {"version", 1}, {"step", 1},
                                {"model_file", "../../victim.txt"}, {"optimizer_file", (root / "victim.txt").string()},
                                {"optimizer", json::object()}, {"trainer", json::object()}}
                               .dump());
  auto data = data::load_data("synthetic:64", {.seed = 1});
  auto model = mlp(1);
  Trainer t(model, data.train, data.test, config(root / "run"));
  save_checkpoint(ck, 2, *model, t.optimizer(), json::object());
  CHECK(read_file(root / "victim.txt") == "keep");
  CHECK(parse_checkpoint_state(read_file(ck / "state.json"), ck).step == 2);
  fs::remove_all(root);
}

TEST_CASE("trainer: a NaN parameter hidden behind a ReLU (finite loss) stops training, naming it") {
  auto data = data::load_data("synthetic:256", {.seed = 3});
  const fs::path dir = temp_dir("relu_nan");
  auto model = mlp(1);
  Trainer t(model, data.train, data.test, config(dir));
  struct Poison : Callback {
    void on_step_end(Trainer& tr, const StepInfo& s) override {
      if (s.step != 2) return;
      qforge::NoGradGuard g;
      for (auto& [name, p] : tr.model().named_parameters())
        if (name == "fc1.bias") {
          Tensor b = p.detach();
          b.fill_(-1e30f);  // every hidden unit dead behind the ReLU: the loss stays finite
          float* d = b.data<float>();
          d[0] = NAN;       // -> relu(NaN) is hidden too
        }
    }
  };
  t.add_callback(std::make_shared<Poison>());
  try {
    t.fit();
    FAIL("expected DivergedError");
  } catch (const DivergedError& e) {
    const std::string msg = e.what();
    CHECK(e.step() == 3);
    CHECK(msg.find("fc1.bias") != std::string::npos);
    CHECK(msg.find("step 3") != std::string::npos);
    CHECK(msg.find("checkpoint (step 2)") != std::string::npos);
  }
  const json st = json::parse(read_file(dir / "checkpoint" / "state.json"));
  CHECK(st["step"] == 2);  // the last good checkpoint is kept
  fs::remove_all(dir);
}

TEST_CASE("trainer: an exploding parameter norm with a finite loss stops training (huge learning rate)") {
  auto data = data::load_data("synthetic:256", {.seed = 3});
  const fs::path dir = temp_dir("explode");
  auto model = mlp(1);
  TrainConfig c = config(dir);
  c.optimizer.lr = 1e10;
  Trainer t(model, data.train, data.test, c);
  CHECK_THROWS_AS(t.fit(), DivergedError);
  fs::remove_all(dir);
}

TEST_CASE("trainer: nonsense settings (log interval 0, absurd threads, negative clipping, NaN decay) are InputError") {
  auto data = data::load_data("synthetic:64", {.seed = 3});
  auto model = mlp(1);
  for (int k = 0; k < 6; ++k) {
    TrainConfig c;
    c.progress = ProgressMode::none;
    if (k == 0) c.log_every = 0;
    if (k == 1) c.threads = 100000;
    if (k == 2) c.clip_grad_norm = -1;
    if (k == 3) c.optimizer.weight_decay = NAN;
    if (k == 4) c.optimizer.momentum = 1.5;
    if (k == 5) c.optimizer.lr = INFINITY;
    CHECK_THROWS_AS(Trainer(model, data.train, data.test, c), InputError);
  }
}

TEST_CASE("trainer: checkpoints store the full configuration; a state inconsistent with the model is refused") {
  auto data = data::load_data("synthetic:256", {.seed = 3});
  const fs::path dir = temp_dir("config");
  TrainConfig c = config(dir);
  c.max_steps = 3;
  c.app_config = {{"model", "mlp"}};
  Trainer(mlp(1), data.train, data.test, c).fit();
  const json st = json::parse(read_file(dir / "checkpoint" / "state.json"));
  const json& cfg = st["trainer"]["config"];
  CHECK(cfg["epochs"] == 1);
  CHECK(cfg["optimizer"]["lr"].get<double>() == 0.05);
  CHECK(cfg["app"]["model"] == "mlp");
  CHECK(read_checkpoint_trainer_state(dir / "checkpoint")["config"] == cfg);
  // Tamper with the position: step that does not match epoch/batch.
  json bad = st;
  bad["trainer"]["step"] = 1000;
  write_file_atomic(dir / "checkpoint" / "state.json", bad.dump());
  TrainConfig r = config(dir);
  r.resume = true;
  CHECK_THROWS_AS(Trainer(mlp(1), data.train, data.test, r).fit(), InputError);
  fs::remove_all(dir);
}
