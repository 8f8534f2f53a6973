#pragma once
/// \file trident/train/log.hpp
/// The training log: one row per iteration with every loss of the model, the total, the learning rate and the
/// throughput, written as CSV (`train_log.csv`) and as JSON lines (`train_log.jsonl`) in the run's folder, and
/// kept in memory for the curves. A resumed run first drops the rows at or after the iteration it resumes from,
/// so the files always describe one uninterrupted run.
#include <trident/config.hpp>
#include <trident/core/files.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace trident::train {

/// One logged iteration.
struct LogRow {
  int64_t iteration = 0;              ///< 0-based
  int64_t epoch = 0;                  ///< 0-based
  double lr = 0;
  std::vector<double> losses;         ///< in the order of TrainingLog::loss_names()
  double total = 0;
  double images_per_second = 0;
  double seconds = 0;                 ///< wall time since the run (or the resumed run) started
};

class TrainingLog {
 public:
  TrainingLog() = default;

  /// Opens `<folder>/train_log.csv` and `.jsonl`. With `resume_from` >= 0 the existing CSV rows with a smaller
  /// iteration are kept (and read back for the curves) and the files are rewritten with just them; otherwise the
  /// files start empty.
  TrainingLog(const std::string& folder, int64_t resume_from = -1)
      : csv_path_((std::filesystem::path(folder) / "train_log.csv").string()),
        jsonl_path_((std::filesystem::path(folder) / "train_log.jsonl").string()) {
    std::filesystem::create_directories(folder);
    if (resume_from >= 0) read_back(resume_from);
    rewrite();
  }

  /// Appends a row. The first row fixes the loss names (the CSV header).
  void add(const std::vector<std::string>& names, LogRow row) {
    if (names_.empty()) {
      names_ = names;
      rewrite();
    }
    TRIDENT_CHECK(names == names_ && row.losses.size() == names.size(),
                  "trident::train::TrainingLog::add: the losses changed during the run ({} names, log has {})",
                  names.size(), names_.size());
    if (!csv_path_.empty()) {
      std::ofstream csv(csv_path_, std::ios::app), jsonl(jsonl_path_, std::ios::app);
      errno = 0;
      csv << csv_line(row) << std::flush;
      jsonl << json_line(row) << std::flush;
      // Flushed here, not in the destructors, so a full disk stops the run with the file's name.
      TRIDENT_CHECK(csv && jsonl, "trident::train::TrainingLog: cannot append to '{}' and '{}': {}", csv_path_,
                    jsonl_path_, errno != 0 ? trident::detail::errno_text(errno) : std::string("write failed"));
    }
    rows_.push_back(std::move(row));
  }

  const std::vector<std::string>& loss_names() const { return names_; }
  const std::vector<LogRow>& rows() const { return rows_; }
  const std::string& csv_path() const { return csv_path_; }

 private:
  std::string csv_header() const {
    std::string h = "iteration,epoch,lr";
    for (const auto& n : names_) h += "," + n;
    return h + ",total,images_per_second,seconds\n";
  }

  std::string csv_line(const LogRow& r) const {
    std::string line = fmt::format("{},{},{:.6g}", r.iteration, r.epoch, r.lr);
    for (double v : r.losses) line += fmt::format(",{:.6g}", v);
    return line + fmt::format(",{:.6g},{:.4g},{:.2f}\n", r.total, r.images_per_second, r.seconds);
  }

  std::string json_line(const LogRow& r) const {
    std::string line = fmt::format("{{\"iteration\": {}, \"epoch\": {}, \"lr\": {:.6g}", r.iteration, r.epoch, r.lr);
    for (size_t i = 0; i < names_.size(); ++i) line += fmt::format(", \"{}\": {:.6g}", names_[i], r.losses[i]);
    return line + fmt::format(", \"total\": {:.6g}, \"images_per_second\": {:.4g}, \"seconds\": {:.2f}}}\n", r.total,
                              r.images_per_second, r.seconds);
  }

  void rewrite() {
    std::ofstream csv(csv_path_, std::ios::trunc), jsonl(jsonl_path_, std::ios::trunc);
    TRIDENT_CHECK(csv && jsonl, "trident::train::TrainingLog: cannot write '{}'", csv_path_);
    if (names_.empty()) return;
    errno = 0;
    csv << csv_header();
    for (const auto& r : rows_) {
      csv << csv_line(r);
      jsonl << json_line(r);
    }
    csv.flush();
    jsonl.flush();
    TRIDENT_CHECK(csv && jsonl, "trident::train::TrainingLog: cannot write '{}' and '{}': {}", csv_path_, jsonl_path_,
                  errno != 0 ? trident::detail::errno_text(errno) : std::string("write failed"));
  }

  void read_back(int64_t before) {
    std::ifstream in(csv_path_);
    std::string line;
    if (!in || !std::getline(in, line)) return;
    std::vector<std::string> cols = split(line);
    if (cols.size() < 6 || cols[0] != "iteration") return;
    names_.assign(cols.begin() + 3, cols.end() - 3);
    while (std::getline(in, line)) {
      const auto v = split(line);
      if (v.size() != cols.size()) break;
      LogRow r;
      r.iteration = std::stoll(v[0]);
      if (r.iteration >= before) break;
      r.epoch = std::stoll(v[1]);
      r.lr = std::stod(v[2]);
      for (size_t i = 3; i + 3 < v.size(); ++i) r.losses.push_back(std::stod(v[i]));
      r.total = std::stod(v[v.size() - 3]);
      r.images_per_second = std::stod(v[v.size() - 2]);
      r.seconds = std::stod(v[v.size() - 1]);
      rows_.push_back(std::move(r));
    }
  }

  static std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> out;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) out.push_back(cell);
    return out;
  }

  std::string csv_path_, jsonl_path_;
  std::vector<std::string> names_;
  std::vector<LogRow> rows_;
};

}  // namespace trident::train
