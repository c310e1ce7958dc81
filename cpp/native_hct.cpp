// native_hct: run an `hpml export` artifact (TorchScript, or an AOTInductor package, fp32 or
// int8) on image files from C++, with LibTorch + OpenCV.
//
//   native_hct <artifact> <image | folder> [--meta meta.json] [--topk K] [--out DIR]
//              [--bench N] [--batch B] [--threads T]
//
// Prints the same lines as `hpml predict` for the same artifact and images:
//   classification: <path> <class>:<probability> ...   (top-k, six decimals)
//   segmentation:   <path> foreground=<fraction> mask=<DIR>/<stem>_mask.png
// --bench N times N forward passes of a batch of B copies of the first image (after warm-up)
// and prints the median and p90 latency in milliseconds.
//
// Preprocessing repeats hpml's (src/hpml_bench/deploy/preprocess.py) op for op: OpenCV
// decodes to the same uint8 pixels PIL gives (no EXIF rotation; grey by PIL's integer
// formula), and the resize is LibTorch's own antialiased bilinear kernel on uint8, the one
// training's torchvision Resize ran, so C++ and Python feed the model the same input.
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// SHA-256 (FIPS 180-4) of a file, hex: the artifact is checked against meta.json's "sha256".
static std::string sha256_file(const fs::path& path) {
  static const uint32_t K[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  auto block = [&](const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure("cannot read " + path.string());
  std::vector<unsigned char> buf(1 << 20);
  uint64_t total = 0;
  size_t have = 0;  // bytes of an unfinished block at buf's start
  while (true) {
    in.read(reinterpret_cast<char*>(buf.data() + have), buf.size() - have);
    size_t got = have + in.gcount();
    total += in.gcount();
    size_t whole = got / 64 * 64;
    for (size_t off = 0; off < whole; off += 64) block(buf.data() + off);
    have = got - whole;
    std::memmove(buf.data(), buf.data() + whole, have);
    if (!in) break;
  }
  unsigned char tail[128] = {0};
  std::memcpy(tail, buf.data(), have);
  tail[have] = 0x80;
  size_t len = have + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = total * 8;
  for (int i = 0; i < 8; ++i) tail[len - 1 - i] = (unsigned char)(bits >> (8 * i));
  for (size_t off = 0; off < len; off += 64) block(tail + off);
  char hex[65];
  for (int i = 0; i < 8; ++i) std::snprintf(hex + 8 * i, 9, "%08x", h[i]);
  return std::string(hex, 64);
}

struct Meta {
  std::string task, format;
  std::string sha256;  // of the artifact, as hpml export recorded it
  int channels = 3, height = 0, width = 0, center_crop = 0;
  int static_batch = 0;  // 0: the artifact takes any batch; 1: exported with export.batch=1
  double scale = 1.0 / 255;
  std::vector<float> mean, std;
  std::vector<std::string> class_names;
};

static Meta read_meta(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw Failure("no meta file " + file.string() + " (give --meta <export folder>/meta.json)");
  cv::FileStorage json(file.string(), cv::FileStorage::READ | cv::FileStorage::FORMAT_JSON);
  if (!json.isOpened()) throw Failure("cannot read " + file.string() + " as JSON");
  Meta m;
  m.task = (std::string)json["task"];
  if (json["input"]["batch"].isInt()) m.static_batch = (int)json["input"]["batch"];
  m.format = (std::string)json["format"];
  if (json["sha256"].isString()) m.sha256 = (std::string)json["sha256"];
  cv::FileNode pre = json["preprocess"];
  if (pre.empty()) throw Failure(file.string() + " has no \"preprocess\"; is it an hpml export's meta.json?");
  m.channels = (int)pre["channels"];
  m.height = (int)pre["size"][0];
  m.width = (int)pre["size"][1];
  if (pre["center_crop"].isInt()) m.center_crop = (int)pre["center_crop"];
  m.scale = (double)pre["scale"];
  for (const auto& v : pre["mean"]) m.mean.push_back((float)(double)v);
  for (const auto& v : pre["std"]) m.std.push_back((float)(double)v);
  for (const auto& v : json["class_names"]) m.class_names.push_back((std::string)v);
  if (m.channels != 1 && m.channels != 3) throw Failure("meta channels must be 1 or 3");
  if ((int)m.mean.size() != m.channels || (int)m.std.size() != m.channels) throw Failure("meta mean/std do not match channels");
  return m;
}

// uint8 [C, H, W] (channels-last memory, like PIL's HWC buffer in Python), RGB or PIL's "L".
static torch::Tensor read_uint8(const fs::path& path, int channels) {
  cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) throw Failure("cannot read image " + path.string());
  cv::Mat pixels;
  if (channels == 3) {
    cv::cvtColor(bgr, pixels, cv::COLOR_BGR2RGB);
  } else {  // PIL's convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
    pixels.create(bgr.rows, bgr.cols, CV_8UC1);
    for (int y = 0; y < bgr.rows; ++y) {
      const uint8_t* in = bgr.ptr<uint8_t>(y);
      uint8_t* out = pixels.ptr<uint8_t>(y);
      for (int x = 0; x < bgr.cols; ++x, in += 3)
        out[x] = (uint8_t)((in[2] * 19595u + in[1] * 38470u + in[0] * 7471u + 0x8000u) >> 16);
    }
  }
  auto hwc = torch::from_blob(pixels.data, {pixels.rows, pixels.cols, channels}, torch::kUInt8).clone();
  return hwc.permute({2, 0, 1});
}

static torch::Tensor to_input(torch::Tensor image, const Meta& m) {
  if (m.center_crop > 0) {
    int64_t h = image.size(1), w = image.size(2), c = m.center_crop;
    if (c > h || c > w) throw Failure("image is smaller than the run's center_crop");
    int64_t top = (int64_t)std::nearbyint((h - c) / 2.0), left = (int64_t)std::nearbyint((w - c) / 2.0);  // half to even, as Python's round
    image = image.slice(1, top, top + c).slice(2, left, left + c);
  }
  auto x = image.unsqueeze(0);
  if (x.size(2) != m.height || x.size(3) != m.width) {
    x = F::interpolate(x.contiguous(torch::MemoryFormat::ChannelsLast),
                       F::InterpolateFuncOptions()
                           .size(std::vector<int64_t>{m.height, m.width})
                           .mode(torch::kBilinear)
                           .align_corners(false)
                           .antialias(true));
  }
  x = x.to(torch::kFloat32).mul_(m.scale);
  auto mean = torch::tensor(m.mean).view({1, -1, 1, 1});
  auto std = torch::tensor(m.std).view({1, -1, 1, 1});
  return x.sub_(mean).div_(std).contiguous();
}

using Model = std::function<torch::Tensor(const torch::Tensor&)>;

static Model load_model(const fs::path& artifact, const std::string& format) {
  if (!fs::is_regular_file(artifact)) throw Failure("no artifact " + artifact.string());
  if (format == "torchscript") {
    auto module = std::make_shared<torch::jit::script::Module>(torch::jit::load(artifact.string()));
    module->eval();
    return [module](const torch::Tensor& x) { return module->forward({x}).toTensor(); };
  }
  if (format == "aoti" || format == "int8") {
    auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(artifact.string());
    return [loader](const torch::Tensor& x) { return loader->run({x}).at(0); };
  }
  throw Failure("format '" + format + "' is Python-only; native_hct runs torchscript, aoti and int8 exports");
}

static std::vector<fs::path> list_images(const fs::path& where) {
  static const std::vector<std::string> suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"};
  if (fs::is_regular_file(where)) return {where};
  if (!fs::is_directory(where)) throw Failure("no such image file or folder: " + where.string());
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(where)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (entry.is_regular_file() && std::find(suffixes.begin(), suffixes.end(), ext) != suffixes.end())
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) { return a.string() < b.string(); });
  if (files.empty()) throw Failure("no image files in " + where.string());
  return files;
}

static std::string classification_line(const torch::Tensor& logits, const Meta& m, int topk) {
  auto probs = torch::softmax(logits[0].to(torch::kFloat32), 0);
  auto [values, indices] = probs.topk(std::min<int64_t>(topk, probs.size(0)));
  std::string line;
  char buf[64];
  for (int64_t k = 0; k < values.size(0); ++k) {
    int64_t i = indices[k].item<int64_t>();
    std::string name = i < (int64_t)m.class_names.size() ? m.class_names[i] : std::to_string(i);
    std::snprintf(buf, sizeof buf, "%.6f", (double)values[k].item<float>());
    line += " " + name + ":" + buf;
  }
  return line;
}

static std::string segmentation_line(const torch::Tensor& logits, const fs::path& image, const fs::path& out) {
  int64_t classes = logits.size(1);
  auto mask = logits[0].argmax(0).to(torch::kInt32);
  double foreground = (mask > 0).to(torch::kFloat32).mean().item<float>();
  auto pixels = (mask * (255 / std::max<int64_t>(1, classes - 1))).to(torch::kUInt8).contiguous();
  cv::Mat png((int)pixels.size(0), (int)pixels.size(1), CV_8UC1, pixels.data_ptr<uint8_t>());
  fs::create_directories(out);
  fs::path file = out / (image.stem().string() + "_mask.png");
  if (!cv::imwrite(file.string(), png)) throw Failure("cannot write " + file.string());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", foreground);
  return std::string(" foreground=") + buf + " mask=" + file.string();
}

static void bench(const Model& model, const torch::Tensor& input, int runs, int batch) {
  auto x = input.expand({batch, input.size(1), input.size(2), input.size(3)}).contiguous();
  for (int i = 0; i < std::max(3, runs / 10); ++i) model(x);  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    model(x);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double median = runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2;
  double p90 = ms[std::min<size_t>(ms.size() - 1, (size_t)std::ceil(0.9 * runs) - 1)];
  std::printf("latency_ms median=%.3f p90=%.3f runs=%d batch=%d threads=%d\n", median, p90, runs, batch,
              at::get_num_threads());
}

static int usage() {
  std::fprintf(stderr,
               "usage: native_hct <artifact> <image | folder> [--meta meta.json] [--topk K] [--out DIR]\n"
               "                  [--bench N] [--batch B] [--threads T]\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  fs::path artifact = argv[1], images = argv[2], meta_file, out = "predictions";
  int topk = 3, runs = 0, batch = 1, threads = 0;
  try {
    for (int i = 3; i < argc; ++i) {
      std::string flag = argv[i];
      if (i + 1 >= argc) return usage();
      std::string value = argv[++i];
      if (flag == "--meta") meta_file = value;
      else if (flag == "--topk") topk = std::stoi(value);
      else if (flag == "--out") out = value;
      else if (flag == "--bench") runs = std::stoi(value);
      else if (flag == "--batch") batch = std::stoi(value);
      else if (flag == "--threads") threads = std::stoi(value);
      else return usage();
    }
    if (threads > 0) at::set_num_threads(threads);
    if (meta_file.empty()) meta_file = artifact.parent_path() / "meta.json";
    Meta meta = read_meta(meta_file);
    if (meta.static_batch > 0 && runs > 0 && batch != meta.static_batch)
      throw Failure("--batch " + std::to_string(batch) + ": this artifact takes a batch of " +
                    std::to_string(meta.static_batch) + " (export.batch=1); export with export.batch=dynamic for others");
    if (!meta.sha256.empty() && fs::is_regular_file(artifact) && sha256_file(artifact) != meta.sha256)
      throw Failure(artifact.string() + " is damaged: its sha256 differs from " + meta_file.string() +
                    "'s; export it again (hpml export)");
    Model model = load_model(artifact, meta.format);
    torch::NoGradGuard no_grad;
    auto files = list_images(images);
    if (runs > 0) {
      bench(model, to_input(read_uint8(files[0], meta.channels), meta), runs, batch);
      return 0;
    }
    for (const auto& file : files) {
      auto logits = model(to_input(read_uint8(file, meta.channels), meta));
      std::string rest = meta.task == "segmentation" ? segmentation_line(logits, file, out)
                                                     : classification_line(logits, meta, topk);
      std::printf("%s%s\n", file.string().c_str(), rest.c_str());
      std::fflush(stdout);
    }
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    std::fprintf(stderr, "error: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::fprintf(stderr, "error: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  }
  return 0;
}
