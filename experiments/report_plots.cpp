// The report's plots (report_plots.hpp): gnuplot scripts and their rendering.
#include "mtp/experiments/report_plots.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <tuple>
#include <utility>

#include "mtp/core/error.hpp"
#include "mtp/experiments/process.hpp"

namespace mtp::exp::reporting {
namespace fs = std::filesystem;

std::string gnuplot_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "''";
    else
      q += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return q + "'";
}

namespace {

// Whether gnuplot's output is whole: an SVG that closes, a PNG that ends in IEND (a full
// disk leaves a truncated file, and gnuplot may still exit 0).
bool rendered_whole(const std::string& path, bool png) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (png) {
    static const std::string kIend("IEND\xae\x42\x60\x82", 8);
    return bytes.rfind("\x89PNG", 0) == 0 && bytes.size() >= 8 &&
           bytes.compare(bytes.size() - 8, 8, kIend) == 0;
  }
  const size_t end = bytes.find_last_not_of(" \n\r\t");
  return end != std::string::npos && end >= 5 && bytes.compare(end - 5, 6, "</svg>") == 0;
}

// The gnuplot script of a plot, reading `dat` and writing `svg` and `png` (names in the
// plots folder).
std::string gnuplot_script(const std::string& title, const std::string& xlabel,
                           const std::string& ylabel, const std::vector<Series>& series,
                           bool error_bars, const std::string& extra, const std::string& dat,
                           const std::string& svg, const std::string& png) {
  std::string cmds;
  for (size_t i = 0; i < series.size(); ++i)
    cmds += fmt::format("{}{} index {} using 1:2{} with {} title {}", i ? ", " : "",
                        gnuplot_quote(dat), i, error_bars ? ":3:4" : "",
                        error_bars ? "yerrorlines" : "linespoints", gnuplot_quote(series[i].title));
  return fmt::format(
      "set title {}\nset xlabel {}\nset ylabel {}\nset grid\nset key outside right\n"
      "set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02\n{}"
      "set terminal svg size 900,520 dynamic noenhanced font 'sans,11'\nset output {}\n"
      "plot {}\n"
      "set terminal pngcairo size 900,520 noenhanced font 'sans,10'\nset output {}\n"
      "replot\n",
      gnuplot_quote(title), gnuplot_quote(xlabel), gnuplot_quote(ylabel), extra, gnuplot_quote(svg),
      cmds, gnuplot_quote(png));
}

std::string base_name(const std::string& path) {
  return fs::path(path).filename().string();
}

// Series titles are settings ("cell=gru perspectives=3", or "A vs B" for a comparison):
// the settings every title holds are dropped (a key that repeats them only squeezes the
// plot), and a comparison's control keeps only the settings in which it differs.
std::vector<Series> without_common_settings(std::vector<Series> series) {
  auto words = [](const std::string& s) {
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string w; in >> w;) out.push_back(w);
    return out;
  };
  auto split = [](const std::string& t) {
    const size_t vs = t.find(" vs ");
    return vs == std::string::npos ? std::pair{t, std::string()}
                                   : std::pair{t.substr(0, vs), t.substr(vs + 4)};
  };
  auto join = [](const std::vector<std::string>& w, auto keep) {
    std::string out;
    for (const std::string& x : w)
      if (keep(x)) {
        if (!out.empty()) out += ' ';
        out += x;
      }
    return out;
  };
  std::vector<std::string> common;
  if (series.size() > 1) {
    common = words(split(series.front().title).first);
    for (const Series& s : series) {
      const std::vector<std::string> w = words(split(s.title).first);
      std::erase_if(common, [&](const std::string& c) {
        return c.find('=') == std::string::npos || std::find(w.begin(), w.end(), c) == w.end();
      });
    }
  }
  auto in = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  for (Series& s : series) {
    const auto [treatment, control] = split(s.title);
    const std::vector<std::string> own = words(treatment);
    std::string title = join(own, [&](const std::string& w) { return !in(common, w); });
    if (!control.empty())
      title += " vs " + join(words(control), [&](const std::string& w) {
                 return w.find('=') == std::string::npos || !in(own, w);
               });
    if (!title.empty()) s.title = title;
  }
  return series;
}

}  // namespace

bool plot(StagedFiles& files, const fs::path& dir, bool render, const std::string& name,
          const std::string& title, const std::string& xlabel, const std::string& ylabel,
          const std::vector<Series>& all_series, bool error_bars, const std::string& extra) {
  if (!render) return true;
  const std::vector<Series> series = without_common_settings(all_series);
  std::string dat;
  for (const Series& s : series) {
    dat += fmt::format("# {}\n", s.title);
    for (const auto& p : s.points)
      dat += fmt::format("{} {} {} {}\n", p[0], p[1], std::isnan(p[2]) ? p[1] : p[2],
                         std::isnan(p[3]) ? p[1] : p[3]);
    dat += "\n\n";
  }
  const std::string stem = (dir / name).string();
  files.stage(stem + ".dat", dat);
  files.stage(stem + ".gp", gnuplot_script(title, xlabel, ylabel, series, error_bars, extra,
                                           name + ".dat", name + ".svg", name + ".png"));
  // The rendering script reads the staged data and writes staged images.
  const std::string dat_tmp = files.temporary(stem + ".dat");
  const std::string svg_tmp = files.reserve(stem + ".svg"), png_tmp = files.reserve(stem + ".png");
  files.stage(stem + ".render.gp",
              gnuplot_script(title, xlabel, ylabel, series, error_bars, extra, base_name(dat_tmp),
                             base_name(svg_tmp), base_name(png_tmp)));
  const std::string gp_tmp = files.temporary(stem + ".render.gp");
  // gnuplot's messages land as <name>.log with the report when it fails (they say why).
  const std::string log = files.reserve(stem + ".log");
  int status = -1;
  try {
    ProcessOptions where;
    where.cwd = dir.string();
    where.output_file = log;  // opened before the child moves to `cwd`
    status = run_process("gnuplot", {"gnuplot", base_name(gp_tmp)}, where);
  } catch (const Error&) {  // gnuplot is not installed
  }
  files.drop(stem + ".render.gp");
  if (status == 0) {
    // gnuplot ran: an incomplete image is a write that failed (a full disk, a quota),
    // and the report fails rather than land with images missing.
    for (const auto& [tmp, name, png] :
         {std::tuple{svg_tmp, stem + ".svg", false}, std::tuple{png_tmp, stem + ".png", true}})
      if (!rendered_whole(tmp, png)) {
        std::ifstream in(log);
        std::string said, line;
        while (std::getline(in, line))
          if (!line.empty()) said = line;
        fail("{}: gnuplot's output is incomplete (is the disk full?){}", name,
             said.empty() ? "" : ": " + said);
      }
    files.drop(stem + ".log");
    return true;
  }
  files.drop(stem + ".svg");
  files.drop(stem + ".png");
  if (status < 0) files.drop(stem + ".log");  // gnuplot did not start: no log
  return false;                               // the log says why
}

}  // namespace mtp::exp::reporting
