// N-API binding from Node.js to libtorch. This file is glue only: every numerical kernel is
// libtorch's. Each exported function converts its JavaScript arguments, calls one ATen op and
// wraps the result. A libtorch exception becomes a JavaScript Error that names the op and the
// shapes and dtypes of its tensor arguments.

#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <algorithm>
#include <functional>
#include <list>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

std::atomic<int64_t> liveTensorCount{0};

// ---------------------------------------------------------------------------------------------
// CPU memory

// libtorch's CPU allocator for this process. Blocks of 32 KiB or more are mapped with mmap and
// kept after their tensor is freed. A later request of the same page-rounded size reuses such a
// block, so a loop that allocates the same shapes every step finds resident pages instead of
// faulting in fresh ones. The cache holds at most as many bytes as were ever live at once in
// such blocks; beyond that the least recently freed blocks are unmapped. Mapped memory thus
// stays below twice the peak of live tensor memory, whatever the sequence of shapes.
//
// Why not malloc: with glibc 2.36 a sampler loop that freed every tensor grew its resident set by
// about one tensor per step, because freed blocks were served from the heap where the small
// allocations of N-API wrappers, kept until garbage collection, pinned them. Fixing glibc's mmap
// threshold stopped the growth, but faulting in fresh pages for every tensor cost a training step
// of the benchmark block about 5x PyTorch's system time (test/engine-memory.test.ts, bench/engine.ts).
class CachingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kMinCachedBytes = 32 * 1024;

  static CachingCpuAllocator& Instance() {
    // Never destroyed: tensors freed during process exit still call Free.
    static CachingCpuAllocator* instance = new CachingCpuAllocator();
    return *instance;
  }

  c10::DataPtr allocate(size_t bytes) const override {
    void* data = bytes < kMinCachedBytes ? nullptr : Instance().TakeBlock(bytes);
    // Small requests, and large ones when mmap fails (too many mappings), go to libtorch's own
    // allocator, which raises libtorch's out-of-memory error if it fails too.
    if (data == nullptr) data = c10::alloc_cpu(bytes);
    return {data, data, &Free, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &Free; }

  struct Stats {
    size_t mappedBytes, cachedBytes;
    uint64_t hits, misses;
  };

  Stats GetStats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {liveBytes_ + cachedBytes_, cachedBytes_, hits_, misses_};
  }

  // Unmaps every cached block; returns the bytes released.
  size_t ReleaseCached() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t released = cachedBytes_;
    while (!lru_.empty()) EvictOldestLocked();
    return released;
  }

 private:
  struct CachedBlock {
    void* data;
    size_t size;
  };
  using LruList = std::list<CachedBlock>;

  CachingCpuAllocator() : pageBytes_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {}

  static void Free(void* data) {
    if (data != nullptr && !Instance().ReturnBlock(data)) c10::free_cpu(data);
  }

  // Returns a cached or newly mapped block of at least `bytes`, or nullptr when mmap fails.
  void* TakeBlock(size_t bytes) {
    size_t size = (bytes + pageBytes_ - 1) / pageBytes_ * pageBytes_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = bySize_.find(size);
      if (it != bySize_.end() && !it->second.empty()) {
        // The most recently freed block of this size, whose pages are the likeliest to be in cache.
        LruList::iterator entry = it->second.back();
        it->second.pop_back();
        void* data = entry->data;
        lru_.erase(entry);
        cachedBytes_ -= size;
        MarkLiveLocked(data, size);
        hits_++;
        return data;
      }
      misses_++;
    }
    void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) {
      ReleaseCached();
      data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (data == MAP_FAILED) return nullptr;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    MarkLiveLocked(data, size);
    return data;
  }

  void MarkLiveLocked(void* data, size_t size) {
    live_[data] = size;
    liveBytes_ += size;
    peakLiveBytes_ = std::max(peakLiveBytes_, liveBytes_);
  }

  // Caches a block that TakeBlock handed out; false for memory from c10::alloc_cpu.
  bool ReturnBlock(void* data) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(data);
    if (it == live_.end()) return false;
    size_t size = it->second;
    live_.erase(it);
    liveBytes_ -= size;
    lru_.push_back({data, size});
    bySize_[size].push_back(std::prev(lru_.end()));
    cachedBytes_ += size;
    while (cachedBytes_ > peakLiveBytes_ && !lru_.empty()) EvictOldestLocked();
    return true;
  }

  // Unmaps the least recently freed block. It is also the oldest of its size, so it sits at the
  // front of that size's list.
  void EvictOldestLocked() {
    CachedBlock oldest = lru_.front();
    auto& sameSize = bySize_[oldest.size];
    sameSize.erase(sameSize.begin());
    if (sameSize.empty()) bySize_.erase(oldest.size);
    lru_.pop_front();
    munmap(oldest.data, oldest.size);
    cachedBytes_ -= oldest.size;
  }

  const size_t pageBytes_;
  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;
  LruList lru_;
  // Per size, the cached blocks' entries in lru_, least recently freed first.
  std::unordered_map<size_t, std::vector<LruList::iterator>> bySize_;
  size_t liveBytes_ = 0;
  size_t peakLiveBytes_ = 0;
  size_t cachedBytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Tensor handle

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeTensor", {});
  }

  explicit NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {}

  ~NativeTensor() override { Release(nullptr); }

  void Set(Napi::Env env, at::Tensor t) {
    tensor_ = std::move(t);
    live_ = true;
    liveTensorCount++;
    reportedBytes_ = StorageBytes();
    if (reportedBytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
  }

  // Frees the native tensor now. With env null (finalizer during garbage collection) the
  // external-memory report is not adjusted, because N-API forbids calls into the engine there.
  void Release(Napi::Env* env) {
    if (!live_) return;
    live_ = false;
    liveTensorCount--;
    if (env != nullptr && reportedBytes_ > 0) {
      Napi::MemoryManagement::AdjustExternalMemory(*env, -reportedBytes_);
    }
    reportedBytes_ = 0;
    tensor_ = at::Tensor();
  }

  bool live() const { return live_; }
  at::Tensor& tensor() { return tensor_; }

 private:
  int64_t StorageBytes() const {
    if (!tensor_.defined() || !tensor_.has_storage()) return 0;
    // Views share their base's storage, so reporting the element bytes of each view may count a
    // buffer more than once. The figure is a hint for V8's garbage collector, not an accounting.
    return static_cast<int64_t>(tensor_.numel() * tensor_.element_size());
  }

  at::Tensor tensor_;
  bool live_ = false;
  int64_t reportedBytes_ = 0;
};

Napi::FunctionReference* NativeTensor::constructor = nullptr;

class OpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  Napi::Object obj = NativeTensor::constructor->New({});
  NativeTensor::Unwrap(obj)->Set(env, std::move(t));
  return obj;
}

bool IsTensor(const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(NativeTensor::constructor->Value());
}

at::Tensor& ToTensor(const Napi::Value& v, const char* what) {
  if (!IsTensor(v)) throw OpError(std::string(what) + " must be a tensor");
  NativeTensor* nt = NativeTensor::Unwrap(v.As<Napi::Object>());
  if (!nt->live()) throw OpError(std::string(what) + " is a disposed tensor");
  return nt->tensor();
}

std::vector<int64_t> ToIntList(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw OpError(std::string(what) + " must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw OpError(std::string(what) + " must be an array of integers");
    out[i] = e.As<Napi::Number>().Int64Value();
  }
  return out;
}

std::vector<at::Tensor> ToTensorList(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw OpError(std::string(what) + " must be an array of tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(ToTensor(a.Get(i), what));
  return out;
}

Napi::Array FromTensorList(Napi::Env env, const std::vector<at::Tensor>& list) {
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) {
    if (list[i].defined()) {
      out.Set(static_cast<uint32_t>(i), Wrap(env, list[i]));
    } else {
      out.Set(static_cast<uint32_t>(i), env.Null());
    }
  }
  return out;
}

double ToDouble(const Napi::Value& v, const char* what) {
  if (v.IsNumber()) return v.As<Napi::Number>().DoubleValue();
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1.0 : 0.0;
  throw OpError(std::string(what) + " must be a number");
}

int64_t ToInt(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw OpError(std::string(what) + " must be an integer");
  return v.As<Napi::Number>().Int64Value();
}

bool ToBool(const Napi::Value& v, const char* what) {
  if (!v.IsBoolean()) throw OpError(std::string(what) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string ToStr(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw OpError(std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

at::ScalarType ToDtype(const Napi::Value& v) {
  std::string name = ToStr(v, "dtype");
  if (name == "float32") return at::kFloat;
  if (name == "float64") return at::kDouble;
  if (name == "int64") return at::kLong;
  if (name == "int32") return at::kInt;
  if (name == "bool") return at::kBool;
  if (name == "uint8") return at::kByte;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw OpError("unknown dtype '" + name +
                "'; expected float32, float64, int64, int32, bool, uint8, bfloat16 or float16");
}

const char* DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kBool: return "bool";
    case at::kByte: return "uint8";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return "unsupported";
  }
}

at::Device ToDevice(const Napi::Value& v) {
  std::string name = ToStr(v, "device");
  if (name != "cpu" && name.rfind("cuda", 0) != 0) {
    throw OpError("unknown device '" + name + "'; expected \"cpu\", \"cuda\" or \"cuda:N\"");
  }
  at::Device device(name);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    throw OpError("device '" + name + "' requested, but this libtorch build has no usable CUDA device");
  }
  return device;
}

at::TensorOptions ToOptions(const Napi::Value& dtype, const Napi::Value& device) {
  return at::TensorOptions().dtype(ToDtype(dtype)).device(ToDevice(device));
}

c10::optional<at::Generator> ToGenerator(const Napi::Value& v);

std::string ShapeString(const at::Tensor& t) {
  std::ostringstream s;
  s << "[";
  for (int64_t i = 0; i < t.dim(); i++) s << (i ? ", " : "") << t.size(i);
  s << "] " << DtypeName(t.scalar_type());
  if (!t.device().is_cpu()) s << " " << t.device();
  return s.str();
}

// Lists the tensor arguments of a call, for error messages.
std::string DescribeArguments(const Napi::CallbackInfo& info) {
  std::ostringstream s;
  bool first = true;
  auto describe = [&](const Napi::Value& v) {
    if (!IsTensor(v)) return;
    NativeTensor* nt = NativeTensor::Unwrap(v.As<Napi::Object>());
    s << (first ? "" : ", ") << (nt->live() ? ShapeString(nt->tensor()) : std::string("disposed"));
    first = false;
  };
  for (size_t i = 0; i < info.Length(); i++) {
    if (info[i].IsArray()) {
      Napi::Array a = info[i].As<Napi::Array>();
      for (uint32_t j = 0; j < a.Length(); j++) describe(a.Get(j));
    } else {
      describe(info[i]);
    }
  }
  return s.str();
}

Napi::Value Fail(const Napi::CallbackInfo& info, const char* op, const std::string& message) {
  // unary, binary and inplace take the op's name ("exp", "add") as their first argument, and
  // that name is more useful to the caller than the dispatcher's.
  std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : op;
  std::string text = name + "(" + DescribeArguments(info) + "): " + message;
  Napi::Error::New(info.Env(), text).ThrowAsJavaScriptException();
  return info.Env().Undefined();
}

// Defines an exported function whose body may throw c10::Error or OpError.
#define OP(name)                                                                         \
  Napi::Value name##Impl(const Napi::CallbackInfo& info);                                \
  Napi::Value name(const Napi::CallbackInfo& info) {                                     \
    try {                                                                                \
      return name##Impl(info);                                                           \
    } catch (const c10::Error& e) {                                                      \
      return Fail(info, #name, e.what_without_backtrace());                              \
    } catch (const OpError& e) {                                                         \
      return Fail(info, #name, e.what());                                                \
    } catch (const Napi::Error& e) {                                                     \
      throw;                                                                             \
    } catch (const std::exception& e) {                                                  \
      return Fail(info, #name, e.what());                                                \
    }                                                                                    \
  }                                                                                      \
  Napi::Value name##Impl(const Napi::CallbackInfo& info)

#define T(i) ToTensor(info[i], "argument " #i)
#define RET(expr) return Wrap(info.Env(), (expr))

// ---------------------------------------------------------------------------------------------
// Creation and data transfer

OP(fromBuffer) {
  // (typedArray, shape, dtype, device)
  if (!info[0].IsTypedArray()) throw OpError("data must be a typed array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  std::vector<int64_t> shape = ToIntList(info[1], "shape");
  at::ScalarType dtype = ToDtype(info[2]);
  at::ScalarType source;
  switch (ta.TypedArrayType()) {
    case napi_float32_array: source = at::kFloat; break;
    case napi_float64_array: source = at::kDouble; break;
    case napi_bigint64_array: source = at::kLong; break;
    case napi_int32_array: source = at::kInt; break;
    case napi_uint8_array: source = dtype == at::kBool ? at::kBool : at::kByte; break;
    default: throw OpError("unsupported typed array; use Float32Array, Float64Array, BigInt64Array, Int32Array or Uint8Array");
  }
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (static_cast<int64_t>(ta.ElementLength()) != numel) {
    throw OpError("data has " + std::to_string(ta.ElementLength()) + " elements but shape needs " +
                  std::to_string(numel));
  }
  uint8_t* data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  at::Tensor view = at::from_blob(data, shape, at::TensorOptions().dtype(source));
  at::Tensor out = view.to(at::TensorOptions().dtype(dtype).device(ToDevice(info[3])), false, true);
  RET(out);
}

OP(toBuffer) {
  at::Tensor t = T(0).detach().to(at::kCPU).contiguous();
  Napi::Env env = info.Env();
  int64_t n = t.numel();
  size_t bytes = static_cast<size_t>(n * t.element_size());
  switch (t.scalar_type()) {
    case at::kFloat: {
      auto a = Napi::Float32Array::New(env, n);
      std::memcpy(a.Data(), t.data_ptr(), bytes);
      return a;
    }
    case at::kDouble: {
      auto a = Napi::Float64Array::New(env, n);
      std::memcpy(a.Data(), t.data_ptr(), bytes);
      return a;
    }
    case at::kLong: {
      auto a = Napi::TypedArrayOf<int64_t>::New(env, n, napi_bigint64_array);
      std::memcpy(a.Data(), t.data_ptr(), bytes);
      return a;
    }
    case at::kInt: {
      auto a = Napi::Int32Array::New(env, n);
      std::memcpy(a.Data(), t.data_ptr(), bytes);
      return a;
    }
    case at::kBool:
    case at::kByte: {
      auto a = Napi::Uint8Array::New(env, n);
      std::memcpy(a.Data(), t.data_ptr(), bytes);
      return a;
    }
    default: {
      at::Tensor f = t.to(at::kFloat);
      auto a = Napi::Float32Array::New(env, n);
      std::memcpy(a.Data(), f.data_ptr(), static_cast<size_t>(n) * 4);
      return a;
    }
  }
}

OP(item) {
  at::Tensor t = T(0);
  if (t.numel() != 1) throw OpError("item() needs a tensor with one element");
  return Napi::Number::New(info.Env(), t.item<double>());
}

OP(zeros) { RET(at::zeros(ToIntList(info[0], "shape"), ToOptions(info[1], info[2]))); }
OP(ones) { RET(at::ones(ToIntList(info[0], "shape"), ToOptions(info[1], info[2]))); }
OP(full) {
  RET(at::full(ToIntList(info[0], "shape"), ToDouble(info[1], "value"), ToOptions(info[2], info[3])));
}
OP(randn) {
  RET(at::randn(ToIntList(info[0], "shape"), ToGenerator(info[3]), ToOptions(info[1], info[2])));
}
OP(rand) {
  RET(at::rand(ToIntList(info[0], "shape"), ToGenerator(info[3]), ToOptions(info[1], info[2])));
}
OP(randint) {
  // (low, high, shape, dtype, device, generator)
  RET(at::randint(ToInt(info[0], "low"), ToInt(info[1], "high"), ToIntList(info[2], "shape"),
                  ToGenerator(info[5]), ToOptions(info[3], info[4])));
}
OP(randperm) {
  RET(at::randperm(ToInt(info[0], "n"), ToGenerator(info[3]), ToOptions(info[1], info[2])));
}
OP(arange) {
  RET(at::arange(ToDouble(info[0], "start"), ToDouble(info[1], "end"), ToDouble(info[2], "step"),
                 ToOptions(info[3], info[4])));
}
OP(linspace) {
  RET(at::linspace(ToDouble(info[0], "start"), ToDouble(info[1], "end"), ToInt(info[2], "steps"),
                   ToOptions(info[3], info[4])));
}

// ---------------------------------------------------------------------------------------------
// Properties and memory

OP(shape) {
  at::Tensor& t = T(0);
  Napi::Array out = Napi::Array::New(info.Env(), t.dim());
  for (int64_t i = 0; i < t.dim(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), t.size(i)));
  return out;
}
OP(dtype) { return Napi::String::New(info.Env(), DtypeName(T(0).scalar_type())); }
OP(device) {
  std::ostringstream s;
  s << T(0).device();
  return Napi::String::New(info.Env(), s.str());
}
OP(dispose) {
  if (!IsTensor(info[0])) throw OpError("argument must be a tensor");
  Napi::Env env = info.Env();
  NativeTensor::Unwrap(info[0].As<Napi::Object>())->Release(&env);
  return env.Undefined();
}
OP(isDisposed) {
  if (!IsTensor(info[0])) throw OpError("argument must be a tensor");
  return Napi::Boolean::New(info.Env(), !NativeTensor::Unwrap(info[0].As<Napi::Object>())->live());
}
OP(liveCount) { return Napi::Number::New(info.Env(), static_cast<double>(liveTensorCount.load())); }
OP(cpuAllocatorStats) {
  auto stats = CachingCpuAllocator::Instance().GetStats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("mappedBytes", static_cast<double>(stats.mappedBytes));
  out.Set("cachedBytes", static_cast<double>(stats.cachedBytes));
  out.Set("hits", static_cast<double>(stats.hits));
  out.Set("misses", static_cast<double>(stats.misses));
  return out;
}
OP(releaseCpuCache) {
  return Napi::Number::New(info.Env(), static_cast<double>(CachingCpuAllocator::Instance().ReleaseCached()));
}
OP(externalMemory) {
  // Adjusting by zero returns the total that this process has reported to V8 as external memory.
  int64_t total = 0;
  napi_status status = napi_adjust_external_memory(info.Env(), 0, &total);
  if (status != napi_ok) throw OpError("napi_adjust_external_memory failed");
  return Napi::Number::New(info.Env(), static_cast<double>(total));
}

// ---------------------------------------------------------------------------------------------
// Shape and indexing

OP(reshape) { RET(T(0).reshape(ToIntList(info[1], "shape"))); }
OP(permute) { RET(T(0).permute(ToIntList(info[1], "dims"))); }
OP(transpose) { RET(T(0).transpose(ToInt(info[1], "dim0"), ToInt(info[2], "dim1"))); }
OP(contiguous) { RET(T(0).contiguous()); }
OP(clone) { RET(T(0).clone()); }
OP(slice) {
  RET(T(0).slice(ToInt(info[1], "dim"), ToInt(info[2], "start"), ToInt(info[3], "end"), ToInt(info[4], "step")));
}
OP(select) { RET(T(0).select(ToInt(info[1], "dim"), ToInt(info[2], "index"))); }
OP(indexSelect) { RET(T(0).index_select(ToInt(info[1], "dim"), T(2))); }
OP(gather) { RET(T(0).gather(ToInt(info[1], "dim"), T(2))); }
OP(scatterAdd) { RET(T(0).scatter_add(ToInt(info[1], "dim"), T(2), T(3))); }
OP(indexAdd) { RET(T(0).index_add(ToInt(info[1], "dim"), T(2), T(3))); }
OP(cat) { RET(at::cat(ToTensorList(info[0], "tensors"), ToInt(info[1], "dim"))); }
OP(stack) { RET(at::stack(ToTensorList(info[0], "tensors"), ToInt(info[1], "dim"))); }
OP(squeeze) { RET(T(0).squeeze(ToInt(info[1], "dim"))); }
OP(unsqueeze) { RET(T(0).unsqueeze(ToInt(info[1], "dim"))); }
OP(flatten) { RET(T(0).flatten(ToInt(info[1], "startDim"), ToInt(info[2], "endDim"))); }
OP(expand) { RET(T(0).expand(ToIntList(info[1], "shape"))); }
OP(repeat) { RET(T(0).repeat(ToIntList(info[1], "repeats"))); }
OP(repeatInterleave) { RET(T(0).repeat_interleave(ToInt(info[1], "repeats"), ToInt(info[2], "dim"))); }
OP(flip) { RET(T(0).flip(ToIntList(info[1], "dims"))); }
OP(pad) {
  // (x, pads, mode, value); pads in torch.nn.functional.pad order (last dimension first).
  std::string mode = ToStr(info[2], "mode");
  std::vector<int64_t> pads = ToIntList(info[1], "pads");
  at::Tensor& x = T(0);
  if (mode == "constant") RET(at::constant_pad_nd(x, pads, ToDouble(info[3], "value")));
  if (mode == "circular") RET(at::_pad_circular(x, pads));
  if (mode == "reflect" || mode == "replicate") RET(at::_pad_enum(x, pads, mode == "reflect" ? 1 : 2, c10::nullopt));
  throw OpError("unknown pad mode '" + mode + "'; expected constant, circular, reflect or replicate");
}
OP(to) {
  // (x, dtype, device)
  RET(T(0).to(ToOptions(info[1], info[2]), false, false));
}

// ---------------------------------------------------------------------------------------------
// Elementwise

using Unary = std::function<at::Tensor(const at::Tensor&)>;
const std::unordered_map<std::string, Unary>& UnaryOps() {
  static const std::unordered_map<std::string, Unary> ops = {
      {"neg", [](const at::Tensor& x) { return x.neg(); }},
      {"exp", [](const at::Tensor& x) { return x.exp(); }},
      {"expm1", [](const at::Tensor& x) { return x.expm1(); }},
      {"log", [](const at::Tensor& x) { return x.log(); }},
      {"log1p", [](const at::Tensor& x) { return x.log1p(); }},
      {"sqrt", [](const at::Tensor& x) { return x.sqrt(); }},
      {"rsqrt", [](const at::Tensor& x) { return x.rsqrt(); }},
      {"sin", [](const at::Tensor& x) { return x.sin(); }},
      {"cos", [](const at::Tensor& x) { return x.cos(); }},
      {"sigmoid", [](const at::Tensor& x) { return x.sigmoid(); }},
      {"logit", [](const at::Tensor& x) { return x.logit(); }},
      {"silu", [](const at::Tensor& x) { return at::silu(x); }},
      {"tanh", [](const at::Tensor& x) { return x.tanh(); }},
      {"relu", [](const at::Tensor& x) { return x.relu(); }},
      {"softplus", [](const at::Tensor& x) { return at::softplus(x); }},
      {"abs", [](const at::Tensor& x) { return x.abs(); }},
      {"square", [](const at::Tensor& x) { return x.square(); }},
      {"sign", [](const at::Tensor& x) { return x.sign(); }},
      {"floor", [](const at::Tensor& x) { return x.floor(); }},
      {"ceil", [](const at::Tensor& x) { return x.ceil(); }},
      {"round", [](const at::Tensor& x) { return x.round(); }},
      {"erf", [](const at::Tensor& x) { return x.erf(); }},
      {"reciprocal", [](const at::Tensor& x) { return x.reciprocal(); }},
      {"isnan", [](const at::Tensor& x) { return x.isnan(); }},
      {"isfinite", [](const at::Tensor& x) { return x.isfinite(); }},
      {"logicalNot", [](const at::Tensor& x) { return x.logical_not(); }},
  };
  return ops;
}

OP(unary) {
  std::string name = ToStr(info[0], "op");
  auto it = UnaryOps().find(name);
  if (it == UnaryOps().end()) throw OpError("unknown unary op '" + name + "'");
  RET(it->second(T(1)));
}

OP(binary) {
  // (name, a, b): a is a tensor, b a tensor or a number.
  std::string name = ToStr(info[0], "op");
  at::Tensor& a = T(1);
  if (IsTensor(info[2])) {
    at::Tensor& b = T(2);
    if (name == "add") RET(a.add(b));
    if (name == "sub") RET(a.sub(b));
    if (name == "mul") RET(a.mul(b));
    if (name == "div") RET(a.div(b));
    if (name == "pow") RET(a.pow(b));
    if (name == "maximum") RET(at::maximum(a, b));
    if (name == "minimum") RET(at::minimum(a, b));
    if (name == "atan2") RET(at::atan2(a, b));
    if (name == "eq") RET(a.eq(b));
    if (name == "ne") RET(a.ne(b));
    if (name == "lt") RET(a.lt(b));
    if (name == "le") RET(a.le(b));
    if (name == "gt") RET(a.gt(b));
    if (name == "ge") RET(a.ge(b));
    if (name == "logicalAnd") RET(a.logical_and(b));
    if (name == "logicalOr") RET(a.logical_or(b));
  } else {
    at::Scalar b = ToDouble(info[2], "other");
    if (name == "add") RET(a.add(b));
    if (name == "sub") RET(a.sub(b));
    if (name == "mul") RET(a.mul(b));
    if (name == "div") RET(a.div(b));
    if (name == "pow") RET(a.pow(b));
    if (name == "maximum") RET(at::clamp_min(a, b));
    if (name == "minimum") RET(at::clamp_max(a, b));
    if (name == "eq") RET(a.eq(b));
    if (name == "ne") RET(a.ne(b));
    if (name == "lt") RET(a.lt(b));
    if (name == "le") RET(a.le(b));
    if (name == "gt") RET(a.gt(b));
    if (name == "ge") RET(a.ge(b));
    if (name == "rsub") RET(at::rsub(a, b));
    if (name == "rdiv") RET(a.reciprocal().mul(b));
    if (name == "rpow") RET(at::pow(b, a));
  }
  throw OpError("unknown binary op '" + name + "' for these argument types");
}

OP(leakyRelu) { RET(at::leaky_relu(T(0), ToDouble(info[1], "negativeSlope"))); }
OP(clamp) {
  c10::optional<at::Scalar> lo, hi;
  if (!info[1].IsNull() && !info[1].IsUndefined()) lo = ToDouble(info[1], "min");
  if (!info[2].IsNull() && !info[2].IsUndefined()) hi = ToDouble(info[2], "max");
  RET(at::clamp(T(0), lo, hi));
}
OP(where) {
  at::Tensor& cond = T(0);
  if (IsTensor(info[1]) && IsTensor(info[2])) RET(at::where(cond, T(1), T(2)));
  if (IsTensor(info[1])) RET(at::where(cond, T(1), at::Scalar(ToDouble(info[2], "other"))));
  if (IsTensor(info[2])) RET(at::where(cond, at::Scalar(ToDouble(info[1], "self")), T(2)));
  RET(at::where(cond, at::Scalar(ToDouble(info[1], "self")), at::Scalar(ToDouble(info[2], "other"))));
}

// ---------------------------------------------------------------------------------------------
// Reductions. dims is an array, or null for every dimension.

c10::optional<std::vector<int64_t>> OptDims(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return ToIntList(v, "dims");
}

OP(sum) {
  auto dims = OptDims(info[1]);
  bool keep = ToBool(info[2], "keepdim");
  if (!dims) RET(keep ? T(0).sum(c10::IntArrayRef{}, true) : T(0).sum());
  RET(T(0).sum(*dims, keep));
}
OP(mean) {
  auto dims = OptDims(info[1]);
  bool keep = ToBool(info[2], "keepdim");
  if (!dims) RET(keep ? T(0).mean(c10::IntArrayRef{}, true) : T(0).mean());
  RET(T(0).mean(*dims, keep));
}
OP(amax) {
  auto dims = OptDims(info[1]);
  RET(T(0).amax(dims ? c10::IntArrayRef(*dims) : c10::IntArrayRef{}, ToBool(info[2], "keepdim")));
}
OP(amin) {
  auto dims = OptDims(info[1]);
  RET(T(0).amin(dims ? c10::IntArrayRef(*dims) : c10::IntArrayRef{}, ToBool(info[2], "keepdim")));
}
OP(argmax) { RET(T(0).argmax(ToInt(info[1], "dim"), ToBool(info[2], "keepdim"))); }
OP(norm) {
  // (x, p, dims, keepdim)
  auto dims = OptDims(info[2]);
  std::vector<int64_t> all;
  if (!dims) {
    for (int64_t i = 0; i < T(0).dim(); i++) all.push_back(i);
  }
  RET(at::linalg_vector_norm(T(0), ToDouble(info[1], "p"), dims ? c10::IntArrayRef(*dims) : c10::IntArrayRef(all),
                             ToBool(info[3], "keepdim"), c10::nullopt));
}
OP(logsumexp) {
  auto dims = OptDims(info[1]);
  std::vector<int64_t> all;
  if (!dims) {
    for (int64_t i = 0; i < T(0).dim(); i++) all.push_back(i);
  }
  RET(at::logsumexp(T(0), dims ? c10::IntArrayRef(*dims) : c10::IntArrayRef(all), ToBool(info[2], "keepdim")));
}
OP(variance) {
  // (x, dims, unbiased, keepdim)
  auto dims = OptDims(info[1]);
  int64_t correction = ToBool(info[2], "unbiased") ? 1 : 0;
  RET(at::var(T(0), dims ? at::OptionalIntArrayRef(*dims) : at::OptionalIntArrayRef(), correction,
              ToBool(info[3], "keepdim")));
}
OP(cumsum) { RET(T(0).cumsum(ToInt(info[1], "dim"))); }
OP(sort) {
  auto result = T(0).sort(ToInt(info[1], "dim"), ToBool(info[2], "descending"));
  return FromTensorList(info.Env(), {std::get<0>(result), std::get<1>(result)});
}

// ---------------------------------------------------------------------------------------------
// Linear algebra and neural-network ops

OP(matmul) { RET(at::matmul(T(0), T(1))); }
OP(linear) {
  c10::optional<at::Tensor> bias;
  if (IsTensor(info[2])) bias = T(2);
  RET(at::linear(T(0), T(1), bias));
}

OP(conv) {
  // (x, weight, bias|null, stride[], padding[], dilation[], groups); dimensionality from x.
  at::Tensor& x = T(0);
  c10::optional<at::Tensor> bias;
  if (IsTensor(info[2])) bias = T(2);
  auto stride = ToIntList(info[3], "stride");
  auto padding = ToIntList(info[4], "padding");
  auto dilation = ToIntList(info[5], "dilation");
  int64_t groups = ToInt(info[6], "groups");
  switch (x.dim()) {
    case 3: RET(at::conv1d(x, T(1), bias, stride, padding, dilation, groups));
    case 4: RET(at::conv2d(x, T(1), bias, stride, padding, dilation, groups));
    case 5: RET(at::conv3d(x, T(1), bias, stride, padding, dilation, groups));
    default: throw OpError("convolution input must have 3, 4 or 5 dimensions [batch, channels, ...spatial]");
  }
}

OP(avgPool) {
  // (x, kernel[], stride[]); dimensionality from the kernel's length.
  at::Tensor& x = T(0);
  auto kernel = ToIntList(info[1], "kernel");
  auto stride = ToIntList(info[2], "stride");
  std::vector<int64_t> zero(kernel.size(), 0);
  switch (kernel.size()) {
    case 1: RET(at::avg_pool1d(x, kernel, stride, zero));
    case 2: RET(at::avg_pool2d(x, kernel, stride, zero));
    case 3: RET(at::avg_pool3d(x, kernel, stride, zero));
    default: throw OpError("pooling kernel must have 1, 2 or 3 entries");
  }
}

OP(upsampleNearest) {
  // (x, scale[]): integer scale factors per spatial dimension; exact repetition of each value.
  at::Tensor& x = T(0);
  auto scale = ToIntList(info[1], "scale");
  std::vector<int64_t> size;
  for (size_t i = 0; i < scale.size(); i++) size.push_back(x.size(static_cast<int64_t>(2 + i)) * scale[i]);
  switch (scale.size()) {
    case 1: RET(at::upsample_nearest1d(x, at::IntArrayRef(size), c10::optional<double>()));
    case 2: RET(at::upsample_nearest2d(x, at::IntArrayRef(size), c10::optional<double>(), c10::optional<double>()));
    case 3: RET(at::upsample_nearest3d(x, at::IntArrayRef(size), c10::optional<double>(), c10::optional<double>(), c10::optional<double>()));
    default: throw OpError("upsampling needs 1, 2 or 3 scale factors");
  }
}

OP(batchNorm) {
  // (x, weight|null, bias|null, runningMean|null, runningVar|null, training, momentum, eps)
  auto opt = [&](int i) -> c10::optional<at::Tensor> {
    if (IsTensor(info[i])) return ToTensor(info[i], "batch norm argument");
    return c10::nullopt;
  };
  RET(at::batch_norm(T(0), opt(1), opt(2), opt(3), opt(4), ToBool(info[5], "training"),
                     ToDouble(info[6], "momentum"), ToDouble(info[7], "eps"), true));
}

OP(dropout) { RET(at::dropout(T(0), ToDouble(info[1], "p"), ToBool(info[2], "training"))); }

OP(binaryCrossEntropyWithLogits) {
  RET(at::binary_cross_entropy_with_logits(T(0), T(1)));
}

// ---------------------------------------------------------------------------------------------
// In-place updates, for optimizers and running statistics

OP(inplace) {
  // (name, target, ...args)
  std::string name = ToStr(info[0], "op");
  at::Tensor& t = T(1);
  at::NoGradGuard guard;
  if (name == "zero") {
    t.zero_();
  } else if (name == "copy") {
    t.copy_(T(2));
  } else if (name == "fill") {
    t.fill_(ToDouble(info[2], "value"));
  } else if (name == "add") {
    double alpha = info.Length() > 3 ? ToDouble(info[3], "alpha") : 1.0;
    if (IsTensor(info[2])) t.add_(T(2), alpha); else t.add_(ToDouble(info[2], "other") * alpha);
  } else if (name == "mul") {
    if (IsTensor(info[2])) t.mul_(T(2)); else t.mul_(ToDouble(info[2], "other"));
  } else if (name == "addcmul") {
    t.addcmul_(T(2), T(3), ToDouble(info[4], "value"));
  } else if (name == "addcdiv") {
    t.addcdiv_(T(2), T(3), ToDouble(info[4], "value"));
  } else if (name == "lerp") {
    t.lerp_(T(2), ToDouble(info[3], "weight"));
  } else {
    throw OpError("unknown in-place op '" + name + "'");
  }
  return info[1];
}

// ---------------------------------------------------------------------------------------------
// Autograd

OP(setRequiresGrad) {
  T(0).requires_grad_(ToBool(info[1], "requiresGrad"));
  return info[0];
}
OP(requiresGrad) { return Napi::Boolean::New(info.Env(), T(0).requires_grad()); }
OP(detach) { RET(T(0).detach()); }
OP(backward) {
  // (x, gradient|null, retainGraph)
  at::Tensor gradient;
  if (IsTensor(info[1])) gradient = T(1);
  T(0).backward(gradient, ToBool(info[2], "retainGraph"), false);
  return info.Env().Undefined();
}
OP(grad) {
  const at::Tensor& g = T(0).grad();
  if (!g.defined()) return info.Env().Null();
  RET(g);
}
OP(clearGrad) {
  T(0).mutable_grad() = at::Tensor();
  return info.Env().Undefined();
}
OP(autogradGrad) {
  // (outputs[], inputs[], gradOutputs[]|null, createGraph, retainGraph, allowUnused)
  auto outputs = ToTensorList(info[0], "outputs");
  auto inputs = ToTensorList(info[1], "inputs");
  std::vector<at::Tensor> gradOutputs;
  if (info[2].IsArray()) gradOutputs = ToTensorList(info[2], "gradOutputs");
  bool createGraph = ToBool(info[3], "createGraph");
  bool retainGraph = ToBool(info[4], "retainGraph");
  auto grads = torch::autograd::grad(outputs, inputs, gradOutputs, retainGraph, createGraph,
                                     ToBool(info[5], "allowUnused"));
  return FromTensorList(info.Env(), grads);
}
OP(setGradEnabled) {
  bool previous = at::GradMode::is_enabled();
  at::GradMode::set_enabled(ToBool(info[0], "enabled"));
  return Napi::Boolean::New(info.Env(), previous);
}
OP(isGradEnabled) { return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled()); }

// ---------------------------------------------------------------------------------------------
// Randomness

class NativeGenerator : public Napi::ObjectWrap<NativeGenerator> {
 public:
  static Napi::FunctionReference* constructor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeGenerator",
                       {InstanceMethod("getState", &NativeGenerator::GetState),
                        InstanceMethod("setState", &NativeGenerator::SetState)});
  }
  explicit NativeGenerator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGenerator>(info) {
    uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  }
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    at::Tensor state = generator.get_state();
    auto out = Napi::Uint8Array::New(info.Env(), state.numel());
    std::memcpy(out.Data(), state.data_ptr(), state.numel());
    return out;
  }
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    at::Tensor state = at::empty({static_cast<int64_t>(bytes.ElementLength())}, at::kByte);
    std::memcpy(state.data_ptr(), bytes.Data(), bytes.ElementLength());
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
    return info.Env().Undefined();
  }
  at::Generator generator;
};
Napi::FunctionReference* NativeGenerator::constructor = nullptr;

c10::optional<at::Generator> ToGenerator(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(NativeGenerator::constructor->Value())) {
    throw OpError("generator must be a Generator");
  }
  return NativeGenerator::Unwrap(v.As<Napi::Object>())->generator;
}

OP(manualSeed) {
  torch::manual_seed(static_cast<uint64_t>(ToInt(info[0], "seed")));
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Runtime

OP(setNumThreads) {
  at::set_num_threads(static_cast<int>(ToInt(info[0], "threads")));
  return info.Env().Undefined();
}
OP(getNumThreads) { return Napi::Number::New(info.Env(), at::get_num_threads()); }
OP(cudaAvailable) { return Napi::Boolean::New(info.Env(), torch::cuda::is_available()); }
OP(version) {
  return Napi::String::New(info.Env(), std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                                           std::to_string(TORCH_VERSION_PATCH));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Priority 1 outranks the default allocator that libtorch registers with priority 0.
  c10::SetCPUAllocator(&CachingCpuAllocator::Instance(), 1);
  Napi::Function tensorClass = NativeTensor::Define(env);
  NativeTensor::constructor = new Napi::FunctionReference(Napi::Persistent(tensorClass));
  exports.Set("NativeTensor", tensorClass);
  Napi::Function generatorClass = NativeGenerator::Define(env);
  NativeGenerator::constructor = new Napi::FunctionReference(Napi::Persistent(generatorClass));
  exports.Set("Generator", generatorClass);

#define EXPORT(name) exports.Set(#name, Napi::Function::New(env, name, #name))
  EXPORT(fromBuffer); EXPORT(toBuffer); EXPORT(item);
  EXPORT(zeros); EXPORT(ones); EXPORT(full); EXPORT(randn); EXPORT(rand); EXPORT(randint);
  EXPORT(randperm); EXPORT(arange); EXPORT(linspace);
  EXPORT(shape); EXPORT(dtype); EXPORT(device); EXPORT(dispose); EXPORT(isDisposed); EXPORT(liveCount); EXPORT(externalMemory); EXPORT(cpuAllocatorStats); EXPORT(releaseCpuCache);
  EXPORT(reshape); EXPORT(permute); EXPORT(transpose); EXPORT(contiguous); EXPORT(clone);
  EXPORT(slice); EXPORT(select); EXPORT(indexSelect); EXPORT(gather); EXPORT(scatterAdd); EXPORT(indexAdd);
  EXPORT(cat); EXPORT(stack); EXPORT(squeeze); EXPORT(unsqueeze); EXPORT(flatten); EXPORT(expand);
  EXPORT(repeat); EXPORT(repeatInterleave); EXPORT(flip); EXPORT(pad); EXPORT(to);
  EXPORT(unary); EXPORT(binary); EXPORT(leakyRelu); EXPORT(clamp); EXPORT(where);
  EXPORT(sum); EXPORT(mean); EXPORT(amax); EXPORT(amin); EXPORT(argmax); EXPORT(norm);
  EXPORT(logsumexp); EXPORT(variance); EXPORT(cumsum); EXPORT(sort);
  EXPORT(matmul); EXPORT(linear); EXPORT(conv); EXPORT(avgPool); EXPORT(upsampleNearest);
  EXPORT(batchNorm); EXPORT(dropout); EXPORT(binaryCrossEntropyWithLogits);
  EXPORT(inplace);
  EXPORT(setRequiresGrad); EXPORT(requiresGrad); EXPORT(detach); EXPORT(backward); EXPORT(grad);
  EXPORT(clearGrad); EXPORT(autogradGrad); EXPORT(setGradEnabled); EXPORT(isGradEnabled);
  EXPORT(manualSeed); EXPORT(setNumThreads); EXPORT(getNumThreads); EXPORT(cudaAvailable); EXPORT(version);
#undef EXPORT
  return exports;
}

}  // namespace

NODE_API_MODULE(caloscore_torch, Init)
