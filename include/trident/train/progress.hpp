#pragma once
/// \file trident/train/progress.hpp
/// A progress bar for training: epoch, iteration, the losses, the learning rate, images/s and the time left.
/// On a terminal it redraws one line; otherwise (a log file, CI) it prints a full line every `every` iterations.
#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace trident::train {

/// "1:02:03" or "02:03".
inline std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds < 0 ? 0 : seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60)
                   : fmt::format("{:02d}:{:02d}", s / 60, s % 60);
}

class ProgressBar {
 public:
  /// `every`: the period of full lines when the output is not a terminal (0: never).
  explicit ProgressBar(int64_t total_iterations, int64_t every = 20, std::FILE* out = stderr)
      : total_(total_iterations), every_(every), out_(out), tty_(out && ::isatty(::fileno(out))) {}

  /// `text`: the losses and whatever else to show after the counters.
  void update(int64_t iteration, int64_t epoch, int64_t epochs, double images_per_second, double eta_seconds,
              const std::string& text) {
    if (!out_) return;
    const double frac = total_ > 0 ? static_cast<double>(iteration) / static_cast<double>(total_) : 0.0;
    const int filled = static_cast<int>(frac * width);
    const std::string bar = std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.');
    const std::string line = fmt::format("[{}] {:3.0f}% it {}/{} ep {}/{} | {} | {:.1f} img/s ETA {}", bar, 100 * frac,
                                         iteration, total_, epoch + 1, epochs, text, images_per_second,
                                         format_duration(eta_seconds));
    if (tty_) {
      std::fprintf(out_, "\r%s\033[K", line.c_str());
      if (iteration >= total_) std::fputc('\n', out_);
      std::fflush(out_);
    } else if (every_ > 0 && (iteration % every_ == 0 || iteration >= total_ || iteration == 1)) {
      std::fprintf(out_, "%s\n", line.c_str());
      std::fflush(out_);
    }
  }

  /// Ends the redrawn line (before printing anything else on a terminal).
  void newline() {
    if (tty_ && out_) std::fputc('\n', out_);
  }

 private:
  static constexpr int width = 20;
  int64_t total_, every_;
  std::FILE* out_;
  bool tty_;
};

}  // namespace trident::train
