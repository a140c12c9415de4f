// The report's plots (`mtp-exp report`, report.cpp): series of points with error bars,
// written as gnuplot data and scripts and rendered to SVG and PNG.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "mtp/core/file_io.hpp"

namespace mtp::exp::reporting {

struct Series {
  std::string title;
  std::vector<std::array<double, 4>> points;  // x, y, y_lo, y_hi (NaN: no error bar)
};

// A string for a gnuplot script: single-quoted (no escapes, no backquote command
// substitution inside), a quote doubled, control characters as spaces.
std::string gnuplot_quote(const std::string& s);

// With `render`, stages <name>.dat and <name>.gp in `files` and renders <name>.svg and
// <name>.png in `dir` through gnuplot (run without a shell, on a script of its own that
// writes temporary files: nothing lands before the whole report does). Settings every
// series title shares are left out of the key. `extra` is gnuplot commands run before the
// plot (tics, ranges). Returns whether the images rendered (false: gnuplot is missing or
// failed, and <name>.log says why); an image gnuplot left incomplete is an mtp::Error.
bool plot(StagedFiles& files, const std::filesystem::path& dir, bool render,
          const std::string& name, const std::string& title, const std::string& xlabel,
          const std::string& ylabel, const std::vector<Series>& series, bool error_bars,
          const std::string& extra = "");

}  // namespace mtp::exp::reporting
