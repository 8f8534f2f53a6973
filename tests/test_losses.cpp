// The paper's losses (weighting.hpp, reid.hpp, part.hpp) against closed forms written out with std::exp and
// std::log, the AGWF gradient of Eq. (4)-(5), numerical gradients, the re-id memory's semantics and state, and the
// documented errors.
#include "support/fixtures.hpp"
#include "support/gradcheck.hpp"

#include <trident/losses/part.hpp>
#include <trident/losses/reid.hpp>
#include <trident/losses/weighting.hpp>
#include <trident/memory/reid_memory.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <sstream>
#include <vector>

using namespace trident;
using losses::Agwf;
using losses::ConfidenceGradient;
using losses::PlainSoftmax;

namespace {

using Row = std::vector<double>;

const auto f64 = at::TensorOptions().dtype(at::kDouble);
const auto i64 = at::TensorOptions().dtype(at::kLong);

std::vector<Row> rows_of(const at::Tensor& t) {
  const auto c = t.detach().to(at::kDouble).contiguous();
  const auto a = c.accessor<double, 2>();
  std::vector<Row> out(static_cast<size_t>(c.size(0)), Row(static_cast<size_t>(c.size(1))));
  for (int64_t i = 0; i < c.size(0); ++i)
    for (int64_t k = 0; k < c.size(1); ++k) out[i][k] = a[i][k];
  return out;
}

std::vector<double> values_of(const at::Tensor& t) {
  const auto c = t.detach().to(at::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

std::vector<int64_t> labels_of(const at::Tensor& t) {
  const auto c = t.to(at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// log(1 + sum_{k != y} exp(alpha (s_k - s_y) / tau)), term by term.
double closed_form_loss(const Row& s, int64_t y, double alpha, double tau) {
  double sum = 0;
  for (size_t k = 0; k < s.size(); ++k)
    if (static_cast<int64_t>(k) != y) sum += std::exp(alpha * (s[k] - s[y]) / tau);
  return std::log(1 + sum);
}

// F_k(s, y) of Eq. (4), written out.
Row weighting_f(const Row& s, int64_t y, double tau) {
  double denominator = 1;
  for (size_t j = 0; j < s.size(); ++j)
    if (static_cast<int64_t>(j) != y) denominator += std::exp((s[j] - s[y]) / tau);
  Row f(s.size(), 0.0);
  double others = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    if (static_cast<int64_t>(k) == y) continue;
    f[k] = std::exp((s[k] - s[y]) / tau) / denominator / tau;
    others += f[k];
  }
  f[y] = -others;
  return f;
}

// G_k(s, alpha, y) = alpha F_k(alpha s, y) of Eq. (5).
Row weighting_g(const Row& s, int64_t y, double alpha, double tau) {
  Row scaled(s);
  for (auto& v : scaled) v *= alpha;
  auto g = weighting_f(scaled, y, tau);
  for (auto& v : g) v *= alpha;
  return g;
}

at::Tensor tensor_of(const std::vector<Row>& rows) {
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return at::tensor(flat, f64).view({static_cast<int64_t>(rows.size()), -1});
}

at::Tensor grad_of(const at::Tensor& y, const at::Tensor& x) {
  return torch::autograd::grad({y}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true)[0];
}

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace

TEST_CASE("classification_loss: hand values, the closed form of Eq. (2) and the AGWF form, stability") {
  // One row, two classes, by hand: log(1 + e^-1) and log(1 + e^(0.5 * (0 - 1) / 0.25)) = log(1 + e^-2).
  const auto s = at::tensor({1.0, 0.0}, f64).view({1, 2});
  const auto y = at::tensor({int64_t{0}}, i64);
  CHECK(losses::classification_loss<PlainSoftmax>(s, y, {}, 1.0).item<double>() ==
        doctest::Approx(0.31326168751822286).epsilon(1e-14));
  CHECK(losses::classification_loss<Agwf>(s, y, at::tensor({0.5}, f64), 0.25).item<double>() ==
        doctest::Approx(0.1269280110429726).epsilon(1e-14));

  const std::vector<Row> rows = {{0.2, 0.5, -0.1, 0.7}, {0.9, -0.3, 0.4, 0.1}, {-0.5, -0.2, 0.8, 0.3}};
  const std::vector<int64_t> labels = {1, 0, 3};
  const std::vector<double> alpha = {0.8, 0.3, 1.0};
  for (const double tau : {1.0 / 30, 0.5}) {
    const auto agwf = values_of(losses::classification_loss<Agwf>(tensor_of(rows), at::tensor(labels, i64),
                                                                  at::tensor(alpha, f64), tau));
    const auto plain = values_of(losses::classification_loss<PlainSoftmax>(tensor_of(rows), at::tensor(labels, i64),
                                                                           at::tensor(alpha, f64), tau));
    for (size_t i = 0; i < rows.size(); ++i) {
      CHECK(agwf[i] == doctest::Approx(closed_form_loss(rows[i], labels[i], alpha[i], tau)).epsilon(1e-12));
      CHECK(plain[i] == doctest::Approx(closed_form_loss(rows[i], labels[i], 1.0, tau)).epsilon(1e-12));
    }
  }

  // float32 with a tiny temperature: differences / tau of 2000 neither overflow nor lose the value.
  const auto extreme = at::tensor({1.f, -1.f, 0.5f}).view({1, 3});
  const auto wrong = losses::classification_loss<PlainSoftmax>(extreme, at::tensor({int64_t{1}}, i64), {}, 1e-3);
  CHECK(std::isfinite(wrong.item<float>()));
  CHECK(wrong.item<float>() == doctest::Approx(2000.0).epsilon(1e-6));
  const auto right = losses::classification_loss<PlainSoftmax>(extreme, at::tensor({int64_t{0}}, i64), {}, 1e-3);
  CHECK(right.item<float>() == doctest::Approx(0.0));
}

TEST_CASE("AGWF: the gradient with respect to S is alpha_i F_k(alpha_i S_i, y_i), Eq. (4)-(5)") {
  auto gen = generator(7);
  for (const int64_t n : {1, 4, 9}) {
    for (const int64_t c : {2, 5, 17}) {
      for (const double tau : {1.0 / 30, 0.3, 1.0}) {
        CAPTURE(n);
        CAPTURE(c);
        CAPTURE(tau);
        const auto s = (at::rand({n, c}, gen, f64) * 2 - 1).requires_grad_(true);
        const auto alpha = (at::rand({n}, gen, f64) * 0.9 + 0.05).requires_grad_(true);
        const auto y = at::randint(c, {n}, gen, i64);
        const auto rows = rows_of(s);
        const auto a = values_of(alpha);
        const auto ys = labels_of(y);

        // Agwf, alpha detached (the default): G_k, and alpha receives nothing.
        const auto detached = losses::classification_loss<Agwf>(s, y, alpha, tau).sum();
        const auto g = rows_of(grad_of(detached, s));
        CHECK_FALSE(grad_of(detached, alpha).defined());
        // PlainSoftmax: F_k(S_i, y_i); alpha is ignored.
        const auto plain = losses::classification_loss<PlainSoftmax>(s, y, alpha, tau).sum();
        const auto f = rows_of(grad_of(plain, s));
        CHECK_FALSE(grad_of(plain, alpha).defined());
        // Agwf, alpha propagated: the same G_k with respect to S.
        const auto propagated = losses::classification_loss<Agwf, ConfidenceGradient::propagated>(s, y, alpha, tau);
        const auto gp = rows_of(grad_of(propagated.sum(), s));
        for (int64_t i = 0; i < n; ++i) {
          const auto expected_g = weighting_g(rows[i], ys[i], a[i], tau);
          const auto expected_f = weighting_f(rows[i], ys[i], tau);
          for (int64_t k = 0; k < c; ++k) {
            CHECK(g[i][k] == doctest::Approx(expected_g[k]).epsilon(1e-10));
            CHECK(gp[i][k] == doctest::Approx(expected_g[k]).epsilon(1e-10));
            CHECK(f[i][k] == doctest::Approx(expected_f[k]).epsilon(1e-10));
          }
        }
        // ... and alpha's gradient is non-zero and equals central differences.
        const auto galpha = grad_of(propagated.sum(), alpha);
        REQUIRE(galpha.defined());
        CHECK(galpha.abs().max().item<double>() > 0);
        const auto r = test::gradcheck(
            [&](const at::Tensor& v) {
              return losses::classification_loss<Agwf, ConfidenceGradient::propagated>(s.detach(), y, v, tau);
            },
            alpha.detach());
        CHECK(r.max_abs_error < 1e-6 * std::max(1.0, r.max_abs_grad));
      }
    }
  }
  // With only alpha in the graph, the detached loss is a constant.
  const auto alpha = at::tensor({0.5, 0.7}, f64).requires_grad_(true);
  const auto s = at::tensor({0.1, 0.2, 0.3, 0.4}, f64).view({2, 2});
  CHECK_FALSE(losses::classification_loss<Agwf>(s, at::tensor({int64_t{0}, int64_t{1}}, i64), alpha, 0.1)
                  .requires_grad());
}

TEST_CASE("re-id terms: L_id (7), L_bin (8), S-bar (10), L_un (9) and L_re-id (6) against the closed forms") {
  // By hand: S_iy = 1, alpha = 1, s_kappa = 1: log(1 + e^0) = log 2.
  CHECK(losses::bin_loss<Agwf>(at::tensor({1.0}, f64), at::tensor({1.0}, f64), 2.0, 1.0).item<double>() ==
        doctest::Approx(0.6931471805599453).epsilon(1e-14));
  // float32 softplus of (1 - (-1)) / 1e-3 = 2000 stays finite and exact.
  CHECK(losses::bin_loss<PlainSoftmax>(at::tensor({-1.f}), {}, 1e-3, 1.0).item<float>() ==
        doctest::Approx(2000.0).epsilon(1e-6));

  // 5 proposals, a look-up table of 3 identities and a queue of 2: labeled rows 0 and 2, unlabeled 1 and 4,
  // background 3.
  const std::vector<Row> s = {{0.3, 0.1, 0.8, -0.2, 0.4},
                              {0.5, -0.4, 0.2, 0.6, 0.1},
                              {0.7, 0.2, -0.1, 0.3, 0.0},
                              {0.9, 0.9, 0.9, 0.9, 0.9},
                              {-0.3, 0.6, 0.2, 0.1, -0.5}};
  const std::vector<int64_t> labels = {2, unlabeled_identity, 0, background_identity, unlabeled_identity};
  const std::vector<double> alpha = {0.9, 0.6, 0.7, 0.2, 0.5};
  const losses::ReidLossOptions o;
  const int64_t lut = 3;

  const std::vector<size_t> labeled = {0, 2}, unlabeled = {1, 4};
  double id = 0, bin = 0, s_bar = 0, un = 0;
  for (const auto i : labeled) {
    id += closed_form_loss(s[i], labels[i], alpha[i], 1.0 / 30) / 2;
    bin += std::log(1 + std::exp((1.0 - alpha[i] * s[i][labels[i]]) / 2.0)) / 2;
    s_bar += s[i][labels[i]] / 2;
  }
  for (const auto i : unlabeled) {
    double sum = 0;
    for (int64_t k = 0; k < lut; ++k) sum += std::exp(alpha[i] * (s[i][k] - s_bar) * 30.0);
    un += std::log(1 + sum) / 2;
  }

  const auto scores = tensor_of(s);
  const auto label_tensor = at::tensor(labels, i64);
  const auto alpha_tensor = at::tensor(alpha, f64);
  const auto terms = losses::reid_loss<Agwf>(scores, label_tensor, alpha_tensor, lut, o);
  CHECK(terms.num_labeled.item<int64_t>() == 2);
  CHECK(terms.num_unlabeled.item<int64_t>() == 2);
  CHECK(terms.id.item<double>() == doctest::Approx(id).epsilon(1e-12));
  CHECK(terms.bin.item<double>() == doctest::Approx(bin).epsilon(1e-12));
  CHECK(terms.mean_positive.item<double>() == doctest::Approx(s_bar).epsilon(1e-12));
  CHECK(terms.un.item<double>() == doctest::Approx(un).epsilon(1e-12));
  CHECK(terms.total.item<double>() == doctest::Approx(id + bin + 0.1 * un).epsilon(1e-12));

  // The per-term functions give the same rows.
  const auto labeled_index = at::tensor(std::vector<int64_t>{0, 2}, i64);
  const auto unlabeled_index = at::tensor(std::vector<int64_t>{1, 4}, i64);
  const auto labeled_scores = scores.index_select(0, labeled_index);
  const auto identities = label_tensor.index_select(0, labeled_index);
  const auto labeled_alpha = alpha_tensor.index_select(0, labeled_index);
  CHECK(losses::id_loss<Agwf>(labeled_scores, identities, labeled_alpha).mean().item<double>() ==
        doctest::Approx(id).epsilon(1e-12));
  const auto positive = labeled_scores.gather(1, identities.unsqueeze(1)).squeeze(1);
  CHECK(losses::bin_loss<Agwf>(positive, labeled_alpha).mean().item<double>() == doctest::Approx(bin).epsilon(1e-12));
  const auto mean_positive = losses::mean_positive_score(labeled_scores, identities);
  CHECK(mean_positive.item<double>() == doctest::Approx(s_bar).epsilon(1e-12));
  CHECK(losses::unlabeled_loss<Agwf>(scores.index_select(0, unlabeled_index).narrow(1, 0, lut), mean_positive,
                                     alpha_tensor.index_select(0, unlabeled_index))
            .mean()
            .item<double>() == doctest::Approx(un).epsilon(1e-12));

  // PlainSoftmax is Agwf with alpha = 1 in every term, L_bin and L_un included.
  const auto plain = losses::reid_loss<PlainSoftmax>(scores, label_tensor, {}, lut, o);
  const auto ones = losses::reid_loss<Agwf>(scores, label_tensor, at::ones({5}, f64), lut, o);
  CHECK(plain.total.item<double>() == doctest::Approx(ones.total.item<double>()).epsilon(1e-14));
  CHECK(plain.un.item<double>() == doctest::Approx(ones.un.item<double>()).epsilon(1e-14));
}

TEST_CASE("L_re-id: gradients equal central differences with respect to the embeddings") {
  auto gen = generator(11);
  memory::ReidMemory<4, 3, 5> mem;
  mem.to(at::kDouble);
  // Rows: labeled 0-2, unlabeled 3-4, background 5.
  const auto labels = at::tensor(std::vector<int64_t>{1, 3, 1, -1, -1, -2}, i64);
  mem.update(at::randn({6, 5}, gen, f64), labels);
  mem.update(at::randn({6, 5}, gen, f64), at::tensor(std::vector<int64_t>{0, 2, -1, -2, -1, -1}, i64));
  const auto x = at::randn({6, 5}, gen, f64) * 0.3;
  const auto alpha = at::rand({6}, gen, f64) * 0.8 + 0.1;
  const auto embed = [](const at::Tensor& v) { return v / v.norm(2, {1}, true); };

  losses::ReidLossOptions through_s_bar;
  through_s_bar.detach_mean_positive = false;
  const auto full = test::gradcheck(
      [&](const at::Tensor& v) {
        return losses::reid_loss<Agwf>(mem.scores(embed(v)), labels, alpha, 4, through_s_bar).total;
      },
      x);
  CHECK(full.max_abs_grad > 0.1);
  CHECK(full.max_abs_error < 1e-6 * full.max_abs_grad);

  // S-bar detached: exact for the unlabeled rows (S-bar does not depend on them) ...
  const auto fixed = x.narrow(0, 0, 3);
  const auto tail = x.narrow(0, 3, 3);
  const auto unlabeled_rows = test::gradcheck(
      [&](const at::Tensor& v) {
        return losses::reid_loss<Agwf>(mem.scores(embed(at::cat({fixed, v}))), labels, alpha, 4).total;
      },
      tail);
  CHECK(unlabeled_rows.max_abs_grad > 0.01);
  CHECK(unlabeled_rows.max_abs_error < 1e-6 * unlabeled_rows.max_abs_grad);
  // ... and the labeled rows get the gradient of L_id + L_bin alone; through S-bar they would get more.
  const auto xv = x.clone().requires_grad_(true);
  const auto detached = losses::reid_loss<Agwf>(mem.scores(embed(xv)), labels, alpha, 4);
  const auto g_total = grad_of(detached.total, xv).narrow(0, 0, 3);
  const auto g_labeled = grad_of(detached.id + detached.bin, xv).narrow(0, 0, 3);
  TRIDENT_CHECK_CLOSE(g_total, g_labeled, 1e-12);
  const auto g_through = grad_of(losses::reid_loss<Agwf>(mem.scores(embed(xv)), labels, alpha, 4, through_s_bar).total,
                                 xv).narrow(0, 0, 3);
  CHECK(test::max_abs_diff(g_through, g_labeled) > 1e-6);

  // With the confidence in the graph, its gradient equals central differences too.
  const auto s = mem.scores(embed(x));
  const auto by_alpha = test::gradcheck(
      [&](const at::Tensor& v) {
        return losses::reid_loss<Agwf, ConfidenceGradient::propagated>(s, labels, v, 4).total;
      },
      alpha);
  CHECK(by_alpha.max_abs_grad > 0.01);
  CHECK(by_alpha.max_abs_error < 1e-6 * by_alpha.max_abs_grad);
}

TEST_CASE("L_part: labels from a foreground mask, Eq. (11) against the closed form, numerical gradient") {
  const auto fg = at::tensor(std::vector<uint8_t>{1, 0, 1}).to(at::kBool);
  const auto z = losses::part_labels(fg, 2);
  TRIDENT_CHECK_EQUAL(z, at::tensor(std::vector<int64_t>{0, 1, 2, 2, 0, 1}, i64).view({3, 2}));

  auto gen = generator(3);
  const auto p = at::randn({3, 2, 3}, gen, f64);
  const std::vector<double> alpha = {0.9, 0.2, 0.6};
  const auto alpha_tensor = at::tensor(alpha, f64);
  const auto zs = labels_of(z);
  const auto flat = rows_of(p.view({6, 3}));
  double expected = 0, expected_plain = 0;
  for (size_t r = 0; r < 6; ++r) {
    expected += closed_form_loss(flat[r], zs[r], alpha[r / 2], 0.1) / 6;
    expected_plain += closed_form_loss(flat[r], zs[r], 1.0, 0.1) / 6;
  }
  CHECK(losses::part_loss<Agwf>(p, z, alpha_tensor).item<double>() == doctest::Approx(expected).epsilon(1e-12));
  CHECK(losses::part_loss<PlainSoftmax>(p, z, {}).item<double>() == doctest::Approx(expected_plain).epsilon(1e-12));

  const auto r = test::gradcheck([&](const at::Tensor& v) { return losses::part_loss<Agwf>(v, z, alpha_tensor); }, p);
  CHECK(r.max_abs_grad > 0.01);
  CHECK(r.max_abs_error < 1e-6 * r.max_abs_grad);

  // P_ijk as probabilities (PartScores::probabilities): Eq. (11) on each partition's softmax, computed by hand.
  const losses::PartLossOptions probabilities{.tau_part = 0.1, .scores = losses::PartScores::probabilities};
  double expected_probabilities = 0;
  for (size_t r = 0; r < 6; ++r) {
    double total = 0;
    for (const double v : flat[r]) total += std::exp(v);
    Row q;
    for (const double v : flat[r]) q.push_back(std::exp(v) / total);
    expected_probabilities += closed_form_loss(q, zs[r], alpha[r / 2], 0.1) / 6;
  }
  const double with_probabilities = losses::part_loss<Agwf>(p, z, alpha_tensor, probabilities).item<double>();
  CHECK(with_probabilities == doctest::Approx(expected_probabilities).epsilon(1e-12));
  CHECK(std::abs(with_probabilities - expected) > 1e-3);  // the option changes the loss
  const auto rp = test::gradcheck(
      [&](const at::Tensor& v) { return losses::part_loss<Agwf>(v, z, alpha_tensor, probabilities); }, p);
  CHECK(rp.max_abs_grad > 0.01);
  CHECK(rp.max_abs_error < 1e-6 * rp.max_abs_grad);
  losses::PartLossOptions unknown;
  unknown.scores = static_cast<losses::PartScores>(5);
  CHECK_THROWS_WITH_AS(losses::part_loss<Agwf>(p, z, alpha_tensor, unknown),
                       "trident::losses::part_loss: options.scores must be PartScores::logits or ::probabilities, got 5",
                       trident::Error);

  // No proposal at all: an exact 0 that backpropagates.
  const auto empty = at::zeros({0, 4, 5}, f64).requires_grad_(true);
  const auto none = losses::part_loss<Agwf>(empty, losses::part_labels(at::zeros({0}, at::kBool), 4),
                                            at::zeros({0}, f64));
  CHECK(none.item<double>() == 0.0);
  CHECK(grad_of(none, empty).defined());
}

TEST_CASE("LookupTable: OIM momentum update, duplicates in batch order, renormalisation") {
  memory::LookupTable table(3, 2);
  CHECK(table->options().momentum == 0.5);
  table->update(at::tensor({3.0, 4.0}, f64).view({1, 2}), at::tensor({int64_t{1}}, i64));
  // normalize(0.5 * 0 + 0.5 * [3, 4]) = [0.6, 0.8]; the other rows stay 0.
  TRIDENT_CHECK_CLOSE(table->features(), at::tensor({0.0, 0.0, 0.6, 0.8, 0.0, 0.0}, at::kFloat).view({3, 2}), 1e-7);

  // Identity 1 twice: first with [1, 0] -> normalize([0.8, 0.4]), then with [0, 1] -> the values below.
  table->update(at::tensor({1.0, 0.0, 0.0, 1.0}, f64).view({2, 2}), at::tensor({int64_t{1}, int64_t{1}}, i64));
  TRIDENT_CHECK_CLOSE(table->features()[1], at::tensor({0.5257311121191336, 0.85065080835204}, at::kFloat), 1e-6);

  // Interleaved identities with another momentum, against the sequential loop written out.
  memory::LookupTable other(3, 2, memory::LookupTableOptions{0.8});
  const std::vector<Row> x = {{1, 2}, {-3, 1}, {0.5, -1}, {2, 2}};
  const std::vector<int64_t> ids = {0, 2, 0, 0};
  std::vector<Row> expected(3, Row{0, 0});
  for (size_t i = 0; i < x.size(); ++i) {
    auto& row = expected[ids[i]];
    for (size_t d = 0; d < 2; ++d) row[d] = 0.8 * row[d] + 0.2 * x[i][d];
    const double norm = std::hypot(row[0], row[1]);
    for (auto& v : row) v /= norm;
  }
  other->update(tensor_of(x), at::tensor(ids, i64));
  TRIDENT_CHECK_CLOSE(other->features(), tensor_of(expected).to(at::kFloat), 1e-6);
  const auto norms = other->features().norm(2, {1});
  CHECK(norms[0].item<float>() == doctest::Approx(1.0));
  CHECK(norms[2].item<float>() == doctest::Approx(1.0));
}

TEST_CASE("CircularQueue: rows written in order with wrap-around, head advanced modulo the size") {
  memory::CircularQueue queue(4, 1);
  const auto column = [](std::vector<double> v) { return at::tensor(v, f64).view({-1, 1}); };
  CHECK(queue->head() == 0);
  queue->push(column({1, 2, 3}));
  TRIDENT_CHECK_CLOSE(queue->features(), column({1, 2, 3, 0}).to(at::kFloat), 0);
  CHECK(queue->head() == 3);
  queue->push(column({4, 5}));
  TRIDENT_CHECK_CLOSE(queue->features(), column({5, 2, 3, 4}).to(at::kFloat), 0);
  CHECK(queue->head() == 1);
  // More rows than slots: 6 -> 1, 7 -> 2, 8 -> 3, 9 -> 0, 10 -> 1, 11 -> 2, as the sequential loop leaves them.
  queue->push(column({6, 7, 8, 9, 10, 11}));
  TRIDENT_CHECK_CLOSE(queue->features(), column({9, 10, 11, 8}).to(at::kFloat), 0);
  CHECK(queue->head() == 3);
  queue->push(at::zeros({0, 1}));
  CHECK(queue->head() == 3);
}

TEST_CASE("ReidMemory: labeled rows update the table, unlabeled and background rows are pushed, in order") {
  using Memory = memory::ReidMemory<3, 4, 2>;
  static_assert(Memory::lut_size == 3 && Memory::queue_size == 4 && Memory::embedding_dim == 2 &&
                Memory::num_columns == 7);
  Memory mem;
  const auto x = at::tensor({3.0, 4.0, 1.0, 1.0, 2.0, 2.0, 0.0, -2.0, 3.0, 3.0}, f64).view({5, 2});
  mem.update(x, at::tensor(std::vector<int64_t>{0, -1, -2, 2, -1}, i64));
  TRIDENT_CHECK_CLOSE(mem.lookup_table->features(),
                      at::tensor({0.6, 0.8, 0.0, 0.0, 0.0, -1.0}, at::kFloat).view({3, 2}), 1e-7);
  TRIDENT_CHECK_CLOSE(mem.queue->features(),
                      at::tensor({1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 0.0, 0.0}, at::kFloat).view({4, 2}), 0);
  CHECK(mem.queue->head() == 3);

  const auto e = at::randn({2, 2});
  const auto s = mem.scores(e);
  CHECK(s.sizes() == at::IntArrayRef({2, 7}));
  TRIDENT_CHECK_CLOSE(s.narrow(1, 0, 3), at::matmul(e, mem.lookup_table->features().t()), 1e-6);
  TRIDENT_CHECK_CLOSE(s.narrow(1, 3, 4), at::matmul(e, mem.queue->features().t()), 1e-6);
}

TEST_CASE("ReidMemory: queue_background off pushes only the unlabeled rows (OIM's queue)") {
  memory::ReidMemory<3, 4, 2> mem(memory::ReidMemoryOptions{.momentum = 0.5, .queue_background = false});
  const auto x = at::tensor({3.0, 4.0, 1.0, 1.0, 2.0, 2.0, 0.0, -2.0, 3.0, 3.0}, f64).view({5, 2});
  mem.update(x, at::tensor(std::vector<int64_t>{0, -1, -2, 2, -1}, i64));
  TRIDENT_CHECK_CLOSE(mem.queue->features(),
                      at::tensor({1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0}, at::kFloat).view({4, 2}), 0);
  CHECK(mem.queue->head() == 2);
  TRIDENT_CHECK_CLOSE(mem.lookup_table->features(),
                      at::tensor({0.6, 0.8, 0.0, 0.0, 0.0, -1.0}, at::kFloat).view({3, 2}), 1e-7);
}

TEST_CASE("ReidMemory: a checkpoint restores the table, the queue and its head exactly") {
  using Memory = memory::ReidMemory<3, 4, 2>;
  auto gen = generator(5);
  auto a = std::make_shared<Memory>();
  a->update(at::randn({5, 2}, gen), at::tensor(std::vector<int64_t>{0, -1, 1, -2, -1}, i64));
  a->update(at::randn({3, 2}, gen), at::tensor(std::vector<int64_t>{2, -1, -1}, i64));
  REQUIRE(a->queue->head() == 1);

  std::stringstream stream;
  {
    torch::serialize::OutputArchive out;
    a->save(out);
    out.save_to(stream);
  }
  auto b = std::make_shared<Memory>();
  {
    torch::serialize::InputArchive in;
    in.load_from(stream);
    b->load(in);
  }
  CHECK(b->lookup_table->features().equal(a->lookup_table->features()));
  CHECK(b->queue->features().equal(a->queue->features()));
  CHECK(b->queue->head() == 1);
  // Both continue identically.
  const auto next = at::randn({2, 2}, gen);
  const auto next_labels = at::tensor(std::vector<int64_t>{-1, 1}, i64);
  a->update(next, next_labels);
  b->update(next, next_labels);
  CHECK(b->queue->features().equal(a->queue->features()));
  CHECK(b->lookup_table->features().equal(a->lookup_table->features()));
  CHECK(b->queue->head() == 2);

  // A checkpoint of other sizes is refused.
  stream.clear();
  stream.seekg(0);
  auto wrong = std::make_shared<memory::ReidMemory<3, 5, 2>>();
  torch::serialize::InputArchive in;
  in.load_from(stream);
  CHECK_THROWS_WITH_AS(wrong->load(in), doctest::Contains("CircularQueue::load"), trident::Error);

  // Module::to(dtype) converts the features, never the head.
  a->to(at::kDouble);
  CHECK((a->queue->features().scalar_type() == at::kDouble));
  CHECK(a->queue->head() == 2);
  a->update(at::randn({3, 2}, gen, f64), at::tensor(std::vector<int64_t>{-1, -2, 0}, i64));
  CHECK(a->queue->head() == 0);
}

TEST_CASE("ReidMemory: one step computes the loss, updates the memory, then runs backward") {
  using Memory = memory::ReidMemory<4, 3, 3>;
  auto gen = generator(9);
  Memory mem;
  const auto labels = at::tensor(std::vector<int64_t>{1, -1, 3, -2}, i64);
  mem.update(at::randn({4, 3}, gen), labels);
  const auto x0 = at::randn({4, 3}, gen);
  const auto alpha = at::rand({4}, gen);

  // Reference gradient: no update in between.
  const auto xr = x0.clone().requires_grad_(true);
  const auto reference = grad_of(losses::reid_loss<Agwf>(mem.scores(xr), labels, alpha, 4).total, xr);

  const auto x = x0.clone().requires_grad_(true);
  const auto loss = losses::reid_loss<Agwf>(mem.scores(x), labels, alpha, 4).total;
  mem.update(x, labels);  // in place, under no-grad, before backward
  REQUIRE_NOTHROW(loss.backward());
  REQUIRE(x.grad().defined());
  TRIDENT_CHECK_CLOSE(x.grad(), reference, 1e-6);
  CHECK_FALSE(mem.lookup_table->features().requires_grad());

  // Why scores() multiplies with a copy: the product with the buffer itself fails autograd's version check.
  const auto y = x0.clone().requires_grad_(true);
  const auto direct = at::matmul(y, mem.lookup_table->features().t()).sum();
  mem.update(x0, labels);
  CHECK_THROWS(direct.backward());
}

TEST_CASE("re-id loss: batches without labeled or unlabeled proposals give finite values") {
  const auto s = at::tensor({0.3, 0.1, 0.8, -0.2, 0.5, -0.4, 0.2, 0.6, 0.7, 0.2, -0.1, 0.3}, f64).view({3, 4});
  const auto alpha = at::tensor({0.9, 0.6, 0.7}, f64);
  const auto run = [&](std::vector<int64_t> labels) {
    const auto scores = s.clone().requires_grad_(true);
    const auto terms = losses::reid_loss<Agwf>(scores, at::tensor(labels, i64), alpha, 2);
    const auto g = grad_of(terms.total, scores);
    REQUIRE(g.defined());
    CHECK(g.isfinite().all().item<bool>());
    for (const auto& t : {terms.total, terms.id, terms.bin, terms.un, terms.mean_positive})
      CHECK(std::isfinite(t.item<double>()));
    return terms;
  };
  const auto no_labeled = run({-1, -1, -2});
  CHECK(no_labeled.num_labeled.item<int64_t>() == 0);
  CHECK(no_labeled.total.item<double>() == 0.0);
  CHECK(no_labeled.un.item<double>() == 0.0);
  CHECK(no_labeled.mean_positive.item<double>() == 0.0);

  const auto no_unlabeled = run({1, 0, -2});
  CHECK(no_unlabeled.un.item<double>() == 0.0);
  CHECK(no_unlabeled.total.item<double>() ==
        doctest::Approx(no_unlabeled.id.item<double>() + no_unlabeled.bin.item<double>()));
  CHECK(no_unlabeled.id.item<double>() > 0);

  CHECK(run({-2, -2, -2}).total.item<double>() == 0.0);

  const auto empty = at::zeros({0, 4}, f64).requires_grad_(true);
  const auto none = losses::reid_loss<Agwf>(empty, at::zeros({0}, i64), at::zeros({0}, f64), 2);
  CHECK(none.total.item<double>() == 0.0);
  CHECK(grad_of(none.total, empty).defined());
}

TEST_CASE("losses and memory: bad shapes, dtypes and labels throw trident::Error naming the argument") {
  const auto s = at::rand({2, 3});
  const auto y = at::tensor({int64_t{0}, int64_t{2}}, i64);
  const auto a = at::rand({2});
  CHECK_THROWS_WITH_AS(losses::classification_loss<Agwf>(s.view({-1}), y, a, 0.1),
                       doctest::Contains("classification_loss: scores must be a [N, C] tensor, got [6]"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(losses::classification_loss<Agwf>(s, at::tensor({int64_t{0}, int64_t{3}}, i64), a, 0.1),
                       doctest::Contains("labels must lie in [0, 3), got values in [0, 3]"), trident::Error);
  CHECK_THROWS_WITH_AS(losses::classification_loss<Agwf>(s, y.to(at::kInt), a, 0.1),
                       doctest::Contains("labels must be int64"), trident::Error);
  CHECK_THROWS_WITH_AS(losses::classification_loss<Agwf>(s, y, at::rand({3}), 0.1),
                       doctest::Contains("alpha must be a [2] tensor"), trident::Error);
  CHECK_THROWS_WITH_AS(losses::classification_loss<Agwf>(s, y, a, 0.0), doctest::Contains("tau must be a positive"),
                       trident::Error);

  CHECK_THROWS_WITH_AS(losses::reid_loss<Agwf>(s, at::tensor({int64_t{-3}, int64_t{0}}, i64), a, 2),
                       doctest::Contains("reid_loss: labels must lie in [-2, 2), got values in [-3, 0]"),
                       trident::Error);
  // A queue column is not an identity.
  CHECK_THROWS_WITH_AS(losses::reid_loss<Agwf>(s, y, a, 2), doctest::Contains("labels must lie in [-2, 2)"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(losses::reid_loss<Agwf>(s, y, a, 4), doctest::Contains("lut_size must lie in [1, 3]"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(losses::unlabeled_loss<Agwf>(s, at::rand({2}), a), doctest::Contains("mean_positive"),
                       trident::Error);

  CHECK_THROWS_WITH_AS(losses::part_loss<Agwf>(at::rand({2, 3, 3}), at::zeros({2, 3}, i64), a),
                       doctest::Contains("part_loss: scores must be a [M, Np, Np + 1] tensor, got [2, 3, 3]"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(losses::part_loss<Agwf>(at::rand({2, 2, 3}), at::full({2, 2}, 3, i64), a),
                       doctest::Contains("labels must lie in [0, 3)"), trident::Error);
  CHECK_THROWS_WITH_AS(losses::part_loss<Agwf>(at::rand({2, 2, 3}), at::zeros({2, 3}, i64), a),
                       doctest::Contains("labels must be a [2, 2] tensor, got [2, 3]"), trident::Error);
  CHECK_THROWS_WITH_AS(losses::part_labels(at::ones({2}, i64), 3),
                       doctest::Contains("foreground must be a bool mask"), trident::Error);

  memory::ReidMemory<3, 4, 2> mem;
  CHECK_THROWS_WITH_AS(mem.lookup_table->update(at::rand({1, 2}), at::tensor({int64_t{3}}, i64)),
                       doctest::Contains("LookupTable::update: identities[0] must lie in [0, 3), got 3"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(mem.queue->push(at::rand({1, 3})),
                       doctest::Contains("CircularQueue::push: features must be a [B, 2] tensor, got [1, 3]"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(mem.update(at::rand({2, 2}), at::tensor({int64_t{0}, int64_t{-3}}, i64)),
                       doctest::Contains("memory::update: labels[1] must lie in [-2, 3), got -3"), trident::Error);
  CHECK_THROWS_WITH_AS(mem.update(at::rand({2, 2}), at::tensor({int64_t{0}}, i64)),
                       doctest::Contains("labels must be a [2] tensor"), trident::Error);
  CHECK_THROWS_WITH_AS(mem.scores(at::rand({2, 3})),
                       doctest::Contains("memory::scores: embeddings must be a [N, 2] tensor, got [2, 3]"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(memory::LookupTable(3, 2, memory::LookupTableOptions{1.5}),
                       doctest::Contains("momentum must lie in [0, 1]"), trident::Error);
}
