// edgedepth-run-native: depth-run without Python, for a robot binary on a Jetson.
//
//   edgedepth-run-native --engine E (--camera URI | --input FILE) [--output V] [--save-depth DIR]
//                        [--stats-json F] [--max-frames N] [--colormap NAME] [--camera-size WxH]
//                        [--camera-fps N] [--quiet]
//
// Capture with OpenCV C++ (V4L2 index or /dev/videoN, csi://N as the nvarguscamerasrc pipeline of
// runtime/sources/streams.py, rtsp://..., a GStreamer pipeline, a video, an image or a folder of
// images), preprocess with the core library, infer with TrtRunner, colourise and write like
// depth-run: the side-by-side video, uint16 millimetre PNGs named as depth-run names them, and a
// --stats-json with depth-run's keys. Exit status as depth-run: 0 ok (also Ctrl-C/SIGTERM/SIGHUP,
// which end the run after the current frame), 1 failure, 2 usage error.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "edgedepth/postprocess.hpp"
#include "edgedepth/preprocess.hpp"
#include "trt_runner.h"
#ifdef EDGEDEPTH_WITH_CUDA
#include "edgedepth/cuda.hpp"
#endif

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace edgedepth {
namespace {

constexpr char const* kProg = "edgedepth-run-native";
//! depth-run's stages, in pipeline order (runtime/stats.py STAGES).
char const* const kStages[] = {"capture", "preprocess", "infer", "postprocess", "render", "end_to_end"};
//! runtime/sources/files.py IMAGE_SUFFIXES.
char const* const kImageSuffixes[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"};

class UsageError : public Error {
public:
    using Error::Error;
};

std::atomic<bool> g_stop{false};
extern "C" void request_stop(int) { g_stop = true; }

struct Args {
    std::string engine, camera, input, output, save_depth, stats_json, colormap = "turbo";
    long max_frames = 0;
    int camera_width = 1280, camera_height = 720, camera_fps = 30;  // CSI defaults (depth-run's)
    bool quiet = false;
};

long positive(std::string const& flag, std::string const& text) {
    char* end = nullptr;
    long const value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || value <= 0) {
        throw UsageError(flag + " " + text + ": expected a whole number above 0");
    }
    return value;
}

Args parse_args(int argc, char** argv) {
    Args args;
    std::map<std::string, std::string*> const text{
        {"--engine", &args.engine}, {"--camera", &args.camera}, {"--input", &args.input},
        {"--output", &args.output}, {"--save-depth", &args.save_depth}, {"--stats-json", &args.stats_json},
        {"--colormap", &args.colormap}};
    for (int i = 1; i < argc; ++i) {
        std::string const flag = argv[i];
        if (flag == "-h" || flag == "--help") {
            std::cout << "usage: " << kProg << " --engine E (--camera URI | --input FILE) [--output V] "
                      << "[--save-depth DIR] [--stats-json F] [--max-frames N] [--colormap NAME] "
                      << "[--camera-size WxH] [--camera-fps N] [--quiet]\n";
            std::exit(0);
        }
        if (flag == "--quiet") {
            args.quiet = true;
            continue;
        }
        if (i + 1 >= argc) throw UsageError("argument " + flag + ": expected one argument");
        std::string const value = argv[++i];
        if (auto found = text.find(flag); found != text.end()) {
            *found->second = value;
        } else if (flag == "--max-frames") {
            args.max_frames = positive(flag, value);
        } else if (flag == "--camera-fps") {
            args.camera_fps = static_cast<int>(positive(flag, value));
        } else if (flag == "--camera-size") {
            std::smatch size;
            if (!std::regex_match(value, size, std::regex("(\\d+)[xX](\\d+)"))) {
                throw UsageError("--camera-size " + value + " must be WIDTHxHEIGHT, e.g. 1280x720");
            }
            args.camera_width = static_cast<int>(positive(flag, size[1])),
            args.camera_height = static_cast<int>(positive(flag, size[2]));
        } else {
            throw UsageError("unrecognized argument " + flag + " (see --help)");
        }
    }
    if (args.engine.empty()) throw UsageError("the following arguments are required: --engine");
    if (args.camera.empty() == args.input.empty()) throw UsageError("give exactly one of --camera and --input");
    try {
        parse_colormap(args.colormap);  // refuses an unknown map before any work
    } catch (Error const& exc) {
        throw UsageError(std::string("--colormap: ") + exc.what());
    }
    return args;
}

// ------------------------------------------------------------------------------------ sources

std::string redact_url(std::string const& url) {  // runtime/sources/streams.py redact_url
    return std::regex_replace(url, std::regex("(://[^:/@]+):[^@/]*@"), "$1:***@");
}

//! runtime/sources/streams.py csi_pipeline (flip none): NV12 in NVMM -> nvvidconv BGRx -> BGR appsink.
std::string csi_pipeline(int sensor, int width, int height, int fps) {
    std::string const size = "width=" + std::to_string(width) + ",height=" + std::to_string(height);
    return "nvarguscamerasrc sensor-id=" + std::to_string(sensor) + " ! video/x-raw(memory:NVMM)," + size +
           ",framerate=" + std::to_string(fps) + "/1,format=NV12 ! nvvidconv flip-method=0 ! video/x-raw," + size +
           ",format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false";
}

bool is_image(fs::path const& path) {
    std::string suffix = path.extension().string();
    std::transform(suffix.begin(), suffix.end(), suffix.begin(), ::tolower);
    return std::find(std::begin(kImageSuffixes), std::end(kImageSuffixes), suffix) != std::end(kImageSuffixes);
}

class Source {
public:
    Source(Args const& args) : uri_(args.camera.empty() ? args.input : args.camera) {
        if (!open_live(args) && !args.camera.empty()) {
            throw UsageError("--camera " + uri_ + " is not a camera: expected 0, /dev/video0, csi://0 or a stream "
                             "URL like rtsp://host/path; pass files and folders with --input");
        }
        if (!capture_.isOpened() && images_.empty()) open_files();
    }

    //! The next frame and its name; false at the end.
    bool read(cv::Mat& frame, std::string& name) {
        ++read_;
        if (!images_.empty() || image_mode_) {
            if (next_image_ >= images_.size()) return --read_, false;
            fs::path const& path = images_[next_image_++];
            frame = cv::imread(path.string(), cv::IMREAD_COLOR);
            name = path.stem().string();
            if (frame.empty()) return ++corrupt_, read(frame, name);
        } else if (!capture_.read(frame) || frame.empty()) {
            return --read_, false;
        } else {
            char index[32];
            std::snprintf(index, sizeof index, "%06ld", read_ - 1);
            name = index;
        }
        ++delivered_;
        return true;
    }

    std::string const& uri() const { return uri_; }
    long read_count() const { return read_; }
    long corrupt() const { return corrupt_; }
    long delivered() const { return delivered_; }
    std::optional<long> expected() const { return expected_; }
    double fps() const { return capture_.isOpened() ? capture_.get(cv::CAP_PROP_FPS) : 0.0; }

private:
    bool open_live(Args const& args) {
        std::smatch match;
        bool const digits = std::regex_match(uri_, std::regex("\\d+"));
        if (digits || std::regex_match(uri_, std::regex("/dev/video\\d+")) || uri_.rfind("v4l2://", 0) == 0) {
            std::string const device = digits ? "/dev/video" + uri_ : uri_.substr(uri_.rfind("v4l2://", 0) == 0 ? 7 : 0);
            return open(cv::VideoCapture(device, cv::CAP_V4L2), "camera " + device + " (V4L2)");
        }
        if (std::regex_match(uri_, match, std::regex("csi://(\\d+)"))) {
            std::string const pipeline =
                csi_pipeline(std::stoi(match[1]), args.camera_width, args.camera_height, args.camera_fps);
            return open(cv::VideoCapture(pipeline, cv::CAP_GSTREAMER), "CSI camera " + uri_ + " (" + pipeline +
                        "); OpenCV needs GStreamer (JetPack's OpenCV has it); if it worked before: "
                        "`sudo systemctl restart nvargus-daemon`");
        }
        if (std::regex_search(uri_, std::regex("^(rtsps?|rtmp|https?|udp|tcp|rtp)://", std::regex::icase))) {
            return open(cv::VideoCapture(uri_, cv::CAP_FFMPEG), "stream " + redact_url(uri_));
        }
        if (uri_.find(" ! ") != std::string::npos) {
            return open(cv::VideoCapture(uri_, cv::CAP_GSTREAMER), "GStreamer pipeline " + uri_);
        }
        return false;
    }

    bool open(cv::VideoCapture capture, std::string const& what) {
        if (!capture.isOpened()) throw Error("cannot open " + what);
        capture_ = std::move(capture);
        return true;
    }

    void open_files() {
        fs::path const path(uri_);
        std::error_code error;
        if (fs::is_directory(path, error)) {
            for (auto const& entry : fs::directory_iterator(path)) {
                if (entry.is_regular_file() && is_image(entry.path())) images_.push_back(entry.path());
            }
            std::sort(images_.begin(), images_.end());
            image_mode_ = true;
        } else if (fs::is_regular_file(path, error) && is_image(path)) {
            images_.push_back(path);
            image_mode_ = true;
        } else if (fs::is_regular_file(path, error)) {
            open(cv::VideoCapture(uri_, cv::CAP_ANY), "video " + uri_ + " (try `ffprobe FILE`)");
            double const frames = capture_.get(cv::CAP_PROP_FRAME_COUNT);
            if (frames > 0) expected_ = static_cast<long>(frames);
            return;
        } else {
            throw UsageError("input " + uri_ + " does not exist: expected a video file, an image, a folder of "
                             "images, a camera (0, /dev/video0, csi://0) or a stream URL (rtsp://...)");
        }
        expected_ = static_cast<long>(images_.size());
    }

    std::string uri_;
    cv::VideoCapture capture_;
    std::vector<fs::path> images_;
    bool image_mode_ = false;
    std::size_t next_image_ = 0;
    long read_ = 0, corrupt_ = 0, delivered_ = 0;
    std::optional<long> expected_;
};

// ------------------------------------------------------------------------------------ timings

//! runtime/stats.py TimingRecorder: exact count/mean/max, percentiles over a bounded uniform
//! sample (reservoir sampling, Vitter's algorithm R), so a day-long stream stays in fixed memory.
class TimingRecorder {
public:
    void add(double seconds) {
        if (values_.size() < kCapacity) {
            values_.push_back(seconds);
        } else if (std::size_t slot = std::uniform_int_distribution<std::size_t>(0, count_)(random_);
                   slot < kCapacity) {
            values_[slot] = seconds;
        }
        ++count_, total_ += seconds, maximum_ = std::max(maximum_, seconds);
    }

    nlohmann::json summary_ms() const {
        nlohmann::json row{{"count", count_}, {"mean", 0.0}, {"p50", 0.0}, {"p90", 0.0}, {"p99", 0.0}, {"max", 0.0}};
        if (count_ == 0) return row;
        std::vector<double> sorted(values_);
        std::sort(sorted.begin(), sorted.end());
        row["mean"] = round4(total_ / static_cast<double>(count_) * 1000.0);
        row["p50"] = round4(percentile(sorted, 50) * 1000.0);
        row["p90"] = round4(percentile(sorted, 90) * 1000.0);
        row["p99"] = round4(percentile(sorted, 99) * 1000.0);
        row["max"] = round4(maximum_ * 1000.0);
        return row;
    }

    double p50_ms() const {
        std::vector<double> sorted(values_);
        std::sort(sorted.begin(), sorted.end());
        return sorted.empty() ? 0.0 : percentile(sorted, 50) * 1000.0;
    }

private:
    static constexpr std::size_t kCapacity = 32768;
    static double round4(double value) { return std::round(value * 1e4) / 1e4; }
    //! numpy.percentile's default (linear interpolation between closest ranks).
    static double percentile(std::vector<double> const& sorted, double q) {
        double const rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
        std::size_t const low = static_cast<std::size_t>(rank);
        std::size_t const high = std::min(low + 1, sorted.size() - 1);
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - static_cast<double>(low));
    }

    std::vector<double> values_;
    std::size_t count_ = 0;
    double total_ = 0.0, maximum_ = 0.0;
    std::mt19937_64 random_{0};
};

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// ------------------------------------------------------------------------------------ outputs

//! edgedepth.io's rule: write a temporary file in the target folder, check it, then rename.
void write_atomic(fs::path const& path, std::string const& bytes) {
    fs::path const temp = path.parent_path() / ("." + path.filename().string() + ".tmp" + std::to_string(getpid()));
    {
        std::ofstream out(temp, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) {
            std::error_code ignored;
            fs::remove(temp, ignored);
            throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
        }
    }
    fs::rename(temp, path);
}

void write_depth_png(fs::path const& folder, std::string const& name, cv::Mat const& millimetres) {
    std::vector<std::uint8_t> png;
    if (!cv::imencode(".png", millimetres, png)) throw Error("OpenCV could not encode a depth PNG for " + name);
    write_atomic(folder / (name + ".png"), std::string(png.begin(), png.end()));
}

nlohmann::json environment() {  // runtime/bench.py environment(), the native fields
    utsname host{};
    uname(&host);
    nlohmann::json info{{"machine", host.machine}, {"cpu_count", sysconf(_SC_NPROCESSORS_ONLN)},
                        {"platform", std::string(host.sysname) + "-" + host.release + "-" + host.machine},
                        {"tensorrt", trt_library_version()}, {"cv2", CV_VERSION}, {"native", true}};
    std::ifstream model("/proc/device-tree/model");
    std::string jetson;
    if (model && std::getline(model, jetson, '\0') && !jetson.empty()) info["jetson_model"] = jetson;
    return info;
}

// ------------------------------------------------------------------------------------ the run

struct Run {
    std::map<std::string, TimingRecorder> timings;
    long processed = 0;
    std::string exit_reason = "end_of_stream";
    std::optional<std::string> error;
    double wall_s = 0.0;
};

class NativePipeline {
public:
    NativePipeline(Args const& args, Source& source, TrtRunner& runner)
        : args_(args), source_(source), runner_(runner), colormap_(parse_colormap(args.colormap)) {
        input_.resize(runner.input_elements());
        depth_.resize(runner.output_elements());
        if (!args.save_depth.empty()) fs::create_directories(args.save_depth);
    }

    Run run() {
        Run result;
        Clock::time_point first{}, last{};
        cv::Mat frame;
        std::string name;
        try {
            while (!g_stop && (args_.max_frames == 0 || result.processed < args_.max_frames)) {
                Clock::time_point const captured = Clock::now();
                if (!source_.read(frame, name)) break;
                add(result, "capture", seconds_since(captured));
                if (result.processed == 0) first = captured;
                process(result, frame, name, captured);
                last = Clock::now();
            }
        } catch (std::exception const& exc) {  // the stats of what ran are still written
            result.exit_reason = "error", result.error = exc.what();
        }
        if (!result.error && g_stop) {
            result.exit_reason = "interrupted";
        } else if (!result.error && args_.max_frames && result.processed >= args_.max_frames) {
            result.exit_reason = "max_frames";
        }
        result.wall_s = result.processed ? std::chrono::duration<double>(last - first).count() : 0.0;
        if (writer_.isOpened()) writer_.release();
        return result;
    }

private:
    void process(Run& result, cv::Mat const& frame, std::string const& name, Clock::time_point captured) {
        Clock::time_point start = Clock::now();
        ImageView view;
        view.format = PixelFormat::BGR, view.width = frame.cols, view.height = frame.rows;
        view.data = frame.data, view.stride = frame.step;
        if (!plan_ || plan_->source_width != frame.cols || plan_->source_height != frame.rows) {
            plan_ = PreprocessPlan::make(runner_.spec(), frame.cols, frame.rows, PixelFormat::BGR);
        }
        bool const on_device = preprocess_on_device(frame, view);
        if (!on_device) preprocess_cpu(view, *plan_, input_.data());
        add(result, "preprocess", seconds_since(start));

        start = Clock::now();
        if (on_device) {
            runner_.infer_from_device(depth_.data());
        } else {
            runner_.infer(input_.data(), depth_.data());
        }
        add(result, "infer", seconds_since(start));

        start = Clock::now();
        int const height = runner_.output_height(), width = runner_.output_width();
        cv::Mat colour, millimetres;
        if (!args_.output.empty()) {
            colour.create(height, width, CV_8UC3);
            colorize_cpu(depth_.data(), height, width, runner_.spec().min_depth, runner_.spec().max_depth, colormap_,
                         colour.data);
        }
        if (!args_.save_depth.empty()) {
            millimetres.create(height, width, CV_16UC1);
            depth_to_millimetres_cpu(depth_.data(), depth_.size(), reinterpret_cast<std::uint16_t*>(millimetres.data));
        }
        add(result, "postprocess", seconds_since(start));

        start = Clock::now();
        if (!millimetres.empty()) write_depth_png(args_.save_depth, name, millimetres);
        if (!colour.empty()) write_view(frame, colour);
        Clock::time_point const done = Clock::now();
        add(result, "render", std::chrono::duration<double>(done - start).count());
        add(result, "end_to_end", std::chrono::duration<double>(done - captured).count());
        ++result.processed;
    }

    //! Input | colourised depth (scaled to the frame), as runtime/sinks.py side_by_side.
    void write_view(cv::Mat const& frame, cv::Mat const& colour) {
        cv::Mat scaled, view;
        cv::resize(colour, scaled, frame.size(), 0, 0, cv::INTER_LINEAR);
        cv::hconcat(frame, scaled, view);
        if (!writer_.isOpened()) {
            std::string const lower = fs::path(args_.output).extension().string();
            int const fourcc = lower == ".avi" || lower == ".mkv" ? cv::VideoWriter::fourcc('M', 'J', 'P', 'G')
                                                                   : cv::VideoWriter::fourcc('m', 'p', '4', 'v');
            double const fps = source_.fps() > 0 ? source_.fps() : 30.0;
            if (!writer_.open(args_.output, fourcc, fps, view.size())) {
                throw Error("cannot write video " + args_.output + ": OpenCV has no writer for it; use .mp4 or .avi");
            }
        }
        writer_.write(view);
    }

    //! With the CUDA tier, the frame is uploaded once and the fused kernel writes the network input
    //! straight into the engine's input buffer on the runner's stream (no host float tensor, no
    //! second copy). FP16-input engines take the CPU path (their input buffer holds halves).
    bool preprocess_on_device(cv::Mat const& frame, ImageView view) {
#ifdef EDGEDEPTH_WITH_CUDA
        float* input = runner_.device_input();
        if (input == nullptr) return false;
        if (!cuda_preprocessor_) cuda_preprocessor_ = std::make_unique<CudaPreprocessor>(runner_.spec());
        std::size_t const bytes = frame.step * static_cast<std::size_t>(frame.rows);
        if (bytes > frame_capacity_) {
            cudaFree(device_frame_);
            device_frame_ = nullptr, frame_capacity_ = 0;
            if (cudaMalloc(&device_frame_, bytes) != cudaSuccess) throw Error("cudaMalloc of a camera frame failed");
            frame_capacity_ = bytes;
        }
        if (cudaMemcpyAsync(device_frame_, frame.data, bytes, cudaMemcpyHostToDevice, runner_.stream()) != cudaSuccess) {
            throw Error("cudaMemcpyAsync of a camera frame failed");
        }
        view.data = static_cast<std::uint8_t const*>(device_frame_);
        cuda_preprocessor_->run(view, input, runner_.stream());
        return true;
#else
        (void)frame, (void)view;
        return false;
#endif
    }

    static void add(Run& result, char const* stage, double seconds) { result.timings[stage].add(seconds); }

    Args const& args_;
    Source& source_;
    TrtRunner& runner_;
    Colormap colormap_;
    std::optional<PreprocessPlan> plan_;
    std::vector<float> input_, depth_;
    cv::VideoWriter writer_;
#ifdef EDGEDEPTH_WITH_CUDA
    std::unique_ptr<CudaPreprocessor> cuda_preprocessor_;
    void* device_frame_ = nullptr;
    std::size_t frame_capacity_ = 0;

public:
    ~NativePipeline() { cudaFree(device_frame_); }
#endif
};

nlohmann::json stats_document(Args const& args, Source const& source, TrtRunner const& runner, Run const& run) {
    nlohmann::json stages = nlohmann::json::object();
    for (char const* stage : kStages) {
        auto found = run.timings.find(stage);
        stages[stage] = found == run.timings.end() ? TimingRecorder().summary_ms() : found->second.summary_ms();
    }
    double const fps = run.wall_s > 0 ? static_cast<double>(run.processed) / run.wall_s : 0.0;
    return {
        {"model", fs::absolute(args.engine).string()},
        {"backend", "tensorrt"},
        {"backend_detail", runner.detail()},
        {"source", redact_url(source.uri())},
        {"model_input", {runner.spec().height, runner.spec().width}},
        {"exit_reason", run.exit_reason},
        {"error", run.error ? nlohmann::json(*run.error) : nlohmann::json(nullptr)},
        {"fps", std::round(fps * 1000.0) / 1000.0},
        {"wall_s", std::round(run.wall_s * 1000.0) / 1000.0},
        {"frames", {{"read", source.read_count()}, {"processed", run.processed}, {"dropped", 0},
                    {"corrupt", source.corrupt()}, {"reconnects", 0}}},
        {"stages_ms", stages},
        {"source_frames", {{"expected", source.expected() ? nlohmann::json(*source.expected()) : nlohmann::json()},
                           {"delivered", source.delivered()}}},
        {"warnings", runner.warnings()},
        {"environment", environment()},
    };
}

int run_command(int argc, char** argv) {
    Args const args = parse_args(argc, argv);
    Source source(args);  // a wrong path fails in milliseconds, before an engine takes seconds to load
    TrtRunner runner(args.engine);
    for (std::string const& warning : runner.warnings()) std::cerr << kProg << ": warning: " << warning << "\n";
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) std::signal(signal, request_stop);
    NativePipeline pipeline(args, source, runner);
    Run result = pipeline.run();
    if (!args.quiet) {
        std::cout << result.processed << " frames processed (" << source.read_count() << " read, "
                  << source.corrupt() << " corrupt); stopped: " << result.exit_reason << "; infer p50 "
                  << result.timings["infer"].p50_ms() << " ms\n";
    }
    if (!args.stats_json.empty()) {
        write_atomic(args.stats_json, stats_document(args, source, runner, result).dump(2) + "\n");
    }
    if (result.error) throw Error(*result.error);
    if (result.processed == 0) {
        throw Error("no frame of " + redact_url(source.uri()) + " could be decoded; check that it opens in an "
                    "image viewer, or `ffprobe FILE` for a video");
    }
    return 0;
}

}  // namespace
}  // namespace edgedepth

int main(int argc, char** argv) {
    try {
        return edgedepth::run_command(argc, argv);
    } catch (edgedepth::UsageError const& exc) {
        std::cerr << edgedepth::kProg << ": error: " << exc.what() << "\n";
        return 2;
    } catch (std::exception const& exc) {  // edgedepth::Error, TrtError, OpenCV, filesystem: one line
        std::cerr << edgedepth::kProg << ": error: " << exc.what() << "\n";
        return 1;
    }
}
