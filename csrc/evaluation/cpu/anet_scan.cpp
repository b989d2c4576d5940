// ActivityNet results JSON in one pass over its bytes (scalekit.evaluation; CPU only).
//
// A results file is {"results": {video: [{"segment": [s, e], "label": l,
// "score": p}, ...]}, ...}. The scanner reads the top level token by token as
// scalekit/evaluation/_anet_results.py's numpy reader does (a string runs from
// a quote to the next quote; {[ open, }] close; the top level's keys are the
// strings at depth 1 followed by ':'), finds the one "results" key, and reads
// its object with the strict grammar of the plain shape: every prediction has
// the keys "segment", "label" and "score" once, in the order of the first
// prediction, a segment is two numbers, a label a string, a score a number.
// Numbers follow JSON's grammar and are converted by std::from_chars
// (correctly rounded, as Python's float()); an integer -0 is +0.0 (Python's
// int 0), one that underflows is +-0.0, one that overflows declines. Video
// keys and labels are interned by their bytes; strings holding a raw control
// character decline. Anything else (a backslash anywhere, an unterminated
// string, other keys, types or orders, a duplicate video or "results" key)
// declines: info[0] == 0 and the caller parses the file with a JSON parser.
// The caller checks the rest (the file with the results object replaced by
// {}) with a JSON parser and decodes the spans as UTF-8.
//
// No recursion: the top level keeps a depth counter, the results object has a
// fixed depth of 4. Every read is bounds-checked against the buffer's length.
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "common/stable.h"
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace scalekit {
namespace {

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
inline bool is_number_char(uint8_t c) {
  return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

enum Key { kSegment = 0, kLabel = 1, kScore = 2 };

class Scanner {
 public:
  Scanner(const uint8_t* b, size_t n) : b_(b), n_(n) {}

  // Reads the results object whose '{' is at b[at]; on success, i_ is one past its '}'.
  bool results(size_t at) {
    i_ = at + 1;
    std::unordered_set<std::string_view> videos;
    if (lit('}')) return true;
    while (true) {
      size_t s, e;
      if (!string(s, e)) return false;
      if (!videos.insert(view(s, e)).second) return false;  // a duplicate video
      vspans.push_back(static_cast<int64_t>(s));
      vspans.push_back(static_cast<int64_t>(e));
      if (!lit(':') || !lit('[')) return false;
      int64_t count = 0;
      if (!lit(']')) {
        do {
          if (!prediction()) return false;
          ++count;
        } while (lit(','));
        if (!lit(']')) return false;
      }
      counts.push_back(count);
      if (lit('}')) return true;
      if (!lit(',')) return false;
    }
  }

  size_t pos() const { return i_; }

  std::vector<int64_t> counts, vspans, lspans, codes;
  std::vector<double> segments, scores;

 private:
  std::string_view view(size_t s, size_t e) const {
    return std::string_view(reinterpret_cast<const char*>(b_ + s), e - s);
  }
  void ws() {
    while (i_ < n_ && is_ws(b_[i_])) ++i_;
  }
  bool lit(uint8_t c) {
    ws();
    if (i_ < n_ && b_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  // A string without escapes (the file holds no backslash) or raw control
  // characters; [s, e) its contents.
  bool string(size_t& s, size_t& e) {
    ws();
    if (i_ >= n_ || b_[i_] != '"') return false;
    s = i_ + 1;
    const void* q = s < n_ ? std::memchr(b_ + s, '"', n_ - s) : nullptr;
    if (q == nullptr) return false;
    e = static_cast<size_t>(static_cast<const uint8_t*>(q) - b_);
    for (size_t k = s; k < e; ++k) {
      if (b_[k] < 32) return false;
    }
    i_ = e + 1;
    return true;
  }
  bool key(Key& k) {
    size_t s, e;
    if (!string(s, e)) return false;
    const std::string_view v = view(s, e);
    if (v == "segment") {
      k = kSegment;
    } else if (v == "label") {
      k = kLabel;
    } else if (v == "score") {
      k = kScore;
    } else {
      return false;
    }
    return lit(':');
  }
  // A JSON number, strictly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number(double& value) {
    ws();
    const size_t start = i_;
    bool negative = false;
    if (i_ < n_ && b_[i_] == '-') {
      negative = true;
      ++i_;
    }
    const size_t int_start = i_;
    if (i_ >= n_ || !is_digit(b_[i_])) return false;
    if (b_[i_] == '0') {
      ++i_;
    } else {
      while (i_ < n_ && is_digit(b_[i_])) ++i_;
    }
    const size_t int_end = i_;
    size_t frac_start = i_, frac_end = i_;
    bool integer = true;
    if (i_ < n_ && b_[i_] == '.') {
      integer = false;
      frac_start = ++i_;
      if (i_ >= n_ || !is_digit(b_[i_])) return false;
      while (i_ < n_ && is_digit(b_[i_])) ++i_;
      frac_end = i_;
    }
    int64_t exponent = 0;
    if (i_ < n_ && (b_[i_] == 'e' || b_[i_] == 'E')) {
      integer = false;
      ++i_;
      bool exp_negative = false;
      if (i_ < n_ && (b_[i_] == '+' || b_[i_] == '-')) exp_negative = b_[i_++] == '-';
      if (i_ >= n_ || !is_digit(b_[i_])) return false;
      while (i_ < n_ && is_digit(b_[i_])) {
        if (exponent < 100000000) exponent = exponent * 10 + (b_[i_] - '0');  // saturates
        ++i_;
      }
      if (exp_negative) exponent = -exponent;
    }
    const char* first = reinterpret_cast<const char*>(b_ + start);
    const char* last = reinterpret_cast<const char*>(b_ + i_);
    double v = 0.0;
    const auto r = std::from_chars(first, last, v, std::chars_format::general);
    if (r.ptr != last) return false;  // not reached: the grammar was checked
    if (r.ec == std::errc::result_out_of_range) {
      // the power of ten of the first nonzero digit: below 0 underflows (+-0.0), else overflows
      int64_t lead = 0;
      size_t k = int_start;
      while (k < int_end && b_[k] == '0') ++k;
      if (k < int_end) {
        lead = static_cast<int64_t>(int_end - k) - 1;
      } else {
        k = frac_start;
        while (k < frac_end && b_[k] == '0') ++k;
        lead = -static_cast<int64_t>(k - frac_start) - 1;
      }
      if (lead + exponent >= 0) return false;  // infinite: not a finite prediction
      v = negative ? -0.0 : 0.0;
    } else if (r.ec != std::errc()) {
      return false;
    }
    if (integer && v == 0.0) v = 0.0;  // the integer -0 is Python's int 0
    value = v;
    return true;
  }
  bool prediction() {
    if (!lit('{')) return false;
    double seg[2] = {0.0, 0.0}, score = 0.0;
    int64_t code = 0;
    for (int j = 0; j < 3; ++j) {
      if (j > 0 && !lit(',')) return false;
      Key k;
      if (!key(k)) return false;
      if (order_known_) {
        if (k != order_[j]) return false;
      } else {
        for (int m = 0; m < j; ++m) {
          if (order_[m] == k) return false;  // a duplicate key
        }
        order_[j] = k;
      }
      if (k == kSegment) {
        if (!lit('[') || !number(seg[0]) || !lit(',') || !number(seg[1]) || !lit(']')) return false;
      } else if (k == kScore) {
        if (!number(score)) return false;
      } else {
        size_t s, e;
        if (!string(s, e)) return false;
        const auto found = labels_.try_emplace(view(s, e), static_cast<int64_t>(labels_.size()));
        if (found.second) {
          lspans.push_back(static_cast<int64_t>(s));
          lspans.push_back(static_cast<int64_t>(e));
        }
        code = found.first->second;
      }
    }
    if (!lit('}')) return false;
    order_known_ = true;
    segments.push_back(seg[0]);
    segments.push_back(seg[1]);
    scores.push_back(score);
    codes.push_back(code);
    return true;
  }

  const uint8_t* b_;
  size_t n_;
  size_t i_ = 0;
  Key order_[3] = {kSegment, kLabel, kScore};
  bool order_known_ = false;
  std::unordered_map<std::string_view, int64_t> labels_;
};

// The top level, token by token as the numpy reader sees it. Returns the
// results object's '{' and '}' positions in open / close, or false.
bool scan(const uint8_t* b, size_t n, Scanner& results, size_t& open, size_t& close) {
  if (n == 0 || std::memchr(b, '\\', n) != nullptr) return false;
  int64_t depth = 0;
  bool any_token = false, found = false;
  // the last two tokens: a string at depth 1 and then ':' make a key
  bool key_string = false;  // the previous token closed a string at depth 1
  size_t key_s = 0, key_e = 0;
  bool expect_results_value = false;
  size_t i = 0;
  while (i < n) {
    const uint8_t c = b[i];
    if (is_ws(c)) {
      ++i;
      continue;
    }
    if (is_number_char(c)) {
      if (!any_token) return false;  // before the top-level '{'
      ++i;
      continue;
    }
    if (!any_token && c != '{') return false;
    any_token = true;
    if (expect_results_value) {  // the token after "results" ':'
      if (c != '{') return false;
      if (!results.results(i)) return false;
      open = i;
      close = results.pos() - 1;
      i = results.pos();
      expect_results_value = false;
      key_string = false;
      continue;
    }
    bool was_key_string = key_string;
    key_string = false;
    switch (c) {
      case '"': {
        const void* q = i + 1 < n ? std::memchr(b + i + 1, '"', n - i - 1) : nullptr;
        if (q == nullptr) return false;  // an odd number of quotes
        key_s = i + 1;
        key_e = static_cast<size_t>(static_cast<const uint8_t*>(q) - b);
        i = key_e + 1;
        key_string = depth == 1;
        continue;
      }
      case '{':
      case '[':
        ++depth;
        break;
      case '}':
      case ']':
        if (--depth < 0) return false;
        break;
      case ':':
        if (was_key_string && key_e - key_s == 7 && std::memcmp(b + key_s, "results", 7) == 0) {
          if (found) return false;  // a second "results" key
          found = true;
          expect_results_value = true;
        }
        break;
      default:
        break;  // ',' and bytes that are not JSON here: the caller's JSON parser judges the rest
    }
    ++i;
  }
  return any_token && depth == 0 && found && !expect_results_value;
}

// [size / columns, columns] (or [size]) tensor holding a copy of v.
template <typename T>
Tensor vector_tensor(const std::vector<T>& v, int64_t columns = 0) {
  const int64_t size = static_cast<int64_t>(v.size());
  const ScalarType dtype = std::is_same_v<T, double> ? ScalarType::Double : ScalarType::Long;
  return from_vector(v, dtype, columns ? std::vector<int64_t>{size / columns, columns} : std::vector<int64_t>{size});
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> anet_scan_cpu(const Tensor& data_) {
  SK_CHECK(data_.scalar_type() == ScalarType::Byte, "data must be uint8 (the file's bytes), got ",
           data_.scalar_type());
  SK_CHECK(data_.dim() == 1, "data must have shape [B], got ", shape(data_));
  SK_CHECK(data_.device().is_cpu(), "_anet_scan runs on the CPU");
  const Tensor data = as_contiguous(data_);
  const uint8_t* b = data.const_data_ptr<uint8_t>();
  const size_t n = static_cast<size_t>(data.numel());
  Scanner results(b, n);
  size_t open = 0, close = 0;
  Tensor info = new_zeros({3}, ScalarType::Long);
  if (!scan(b, n, results, open, close)) {
    return {info, new_empty({0}, ScalarType::Long), new_empty({0, 2}, ScalarType::Long),
            new_empty({0, 2}, ScalarType::Long), new_empty({0}, ScalarType::Long),
            new_empty({0, 2}, ScalarType::Double), new_empty({0}, ScalarType::Double)};
  }
  int64_t* in = info.mutable_data_ptr<int64_t>();
  in[0] = 1;
  in[1] = static_cast<int64_t>(open);
  in[2] = static_cast<int64_t>(close);
  return {info,
          vector_tensor(results.counts),
          vector_tensor(results.vspans, 2),
          vector_tensor(results.lspans, 2),
          vector_tensor(results.codes),
          vector_tensor(results.segments, 2),
          vector_tensor(results.scores)};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) { m.impl("_anet_scan", TORCH_BOX(&anet_scan_cpu)); }

}  // namespace scalekit
