#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

using namespace qforge;
using testing::rand_input;

TEST_CASE("dropout: zeroes about p of the elements, scales survivors by 1/(1-p), same seed same mask") {
  Tensor x = Tensor::ones({100, 100});
  Generator g1(5), g2(5);
  Tensor a = ops::dropout(x, 0.3, true, g1);
  Tensor b = ops::dropout(x, 0.3, true, g2);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  int64_t zeros = 0;
  for (float v : a.to_vector<float>()) {
    if (v == 0) ++zeros;
    else CHECK(v == doctest::Approx(1 / 0.7));
  }
  CHECK(zeros > 2700);
  CHECK(zeros < 3300);
  Generator g3(6);
  CHECK(ops::dropout(x, 0.3, true, g3).to_vector<float>() != a.to_vector<float>());
}

TEST_CASE("dropout: eval and p=0 are the identity, p=1 zeroes everything") {
  Generator g(1);
  Tensor x = rand_input({3, 4}, 51, -1, 1, false);
  CHECK(ops::dropout(x, 0.5, false, g).same(x));
  CHECK(ops::dropout(x, 0.0, true, g).same(x));
  Tensor z = ops::dropout(x, 1.0, true, g);
  for (double v : z.to_vector<double>()) CHECK(v == 0);
  CHECK_THROWS_WITH_AS(ops::dropout(x, 1.5, true, g), doctest::Contains("dropout: probability must be in [0, 1], got 1.5"), Error);
}

TEST_CASE("dropout: backward uses the forward mask (finite differences with a fixed seed)") {
  auto x = rand_input({4, 5}, 52);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) {
    Generator g(9);  // same mask on every evaluation
    return ops::dropout(in[0], 0.4, true, g);
  }, {x});
  Tensor y = Tensor::ones({50}, DType::f64).set_requires_grad();
  Generator g(3);
  Tensor out = ops::dropout(y, 0.5, true, g);
  ops::sum(out).backward();
  CHECK(y.grad().to_vector<double>() == out.to_vector<double>());  // grad = mask = out / 1
}

TEST_CASE("embedding: looks up rows for any index shape and scatter-adds gradients") {
  Tensor w = Tensor::from_vector<float>({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor idx = Tensor::from_vector<int32_t>({2, 0, 2, 1}, {2, 2});
  Tensor e = ops::embedding(w, idx);
  CHECK(e.shape() == Shape{2, 2, 2});
  CHECK(e.to_vector<float>() == std::vector<float>{20, 21, 0, 1, 20, 21, 10, 11});
  Tensor wd = Tensor::from_vector<double>({0, 1, 10, 11, 20, 21}, {3, 2}).set_requires_grad();
  ops::sum(ops::embedding(wd, idx)).backward();
  CHECK(wd.grad().to_vector<double>() == std::vector<double>{1, 1, 1, 1, 2, 2});
  auto wr = rand_input({5, 3}, 53);
  Tensor id2 = Tensor::from_vector<int32_t>({4, 4, 0, 3, 1, 4}, {6});
  CHECK_GRADCHECK([id2](const std::vector<Tensor>& in) { return ops::embedding(in[0], id2); }, {wr});
  CHECK_GRADCHECK([id2](const std::vector<Tensor>& in) { return ops::embedding(in[0].transpose(0, 1).transpose(0, 1), id2.reshape({2, 3})); }, {wr});
}

TEST_CASE("embedding: out-of-range index names the index and the table size") {
  Tensor w = Tensor::zeros({4, 2});
  CHECK_THROWS_WITH_AS(ops::embedding(w, Tensor::from_vector<int32_t>({1, 4}, {2})),
                       doctest::Contains("embedding: index 4 out of range for a table of size 4"), Error);
  CHECK_THROWS_WITH_AS(ops::embedding(w, Tensor::from_vector<int32_t>({-1}, {1})),
                       doctest::Contains("embedding: index -1 out of range for a table of size 4"), Error);
  CHECK_THROWS_WITH_AS(ops::embedding(w, Tensor::zeros({2})), doctest::Contains("embedding: indices must be i32"), Error);
  CHECK_THROWS_WITH_AS(ops::embedding(Tensor::zeros({4}), Tensor::zeros({2}, DType::i32)),
                       doctest::Contains("embedding: weight must be [num_embeddings, dim], got [4]"), Error);
}
