// PerfReader: a native thread polls the perf event array and hands JavaScript one Buffer per
// batch, with at most one batch in flight: the thread waits for ack() before it queues the next.
// Without that credit, Node's thread-safe-function dispatcher runs up to 1000 queued calls back
// to back and starves timers and sockets for seconds under a flood.
//
// Batch layout: records of [u32 LE size][size bytes of the perf sample].
#include "common.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ihr {

struct Batch {
  std::vector<char> *data;
  uint32_t records;
  uint64_t lost;
};

class PerfReader : public Napi::ObjectWrap<PerfReader> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PerfReader", {
      InstanceMethod("ack", &PerfReader::Ack),
      InstanceMethod("close", &PerfReader::Close),
      InstanceMethod("stats", &PerfReader::Stats),
    });
  }

  // new PerfReader(mapFd, { pageCount, watermarkBytes, batchBytes, flushMs }, onBatch)
  PerfReader(const Napi::CallbackInfo &info) : Napi::ObjectWrap<PerfReader>(info) {
    Napi::Env env = info.Env();
    int map_fd = info[0].As<Napi::Number>().Int32Value();
    Napi::Object o = info[1].As<Napi::Object>();
    size_t pages = o.Get("pageCount").As<Napi::Number>().Uint32Value();
    uint32_t watermark = o.Get("watermarkBytes").As<Napi::Number>().Uint32Value();
    batch_bytes_ = o.Get("batchBytes").As<Napi::Number>().Uint32Value();
    flush_ms_ = o.Get("flushMs").As<Napi::Number>().Uint32Value();
    if (pages == 0 || (pages & (pages - 1))) throw Napi::RangeError::New(env, "pageCount must be a power of two");

    struct perf_event_attr attr = {};
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_BPF_OUTPUT;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.sample_period = 1;
    if (watermark) {
      // Wake the reader only once this many bytes wait in a CPU's ring; the poll timeout
      // drains smaller amounts, so latency stays bounded by flushMs.
      attr.watermark = 1;
      attr.wakeup_watermark = watermark;
    } else {
      attr.wakeup_events = 1;
    }
    LogCapture cap;
    pb_ = perf_buffer__new_raw(map_fd, pages, &attr, &PerfReader::OnEvent, this, nullptr);
    int err = libbpf_get_error(pb_);
    if (err) {
      pb_ = nullptr;
      ThrowErrno(env, "perf_buffer__new_raw", err, cap.Tail());
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "int-perf-reader", 0, 1);
    cur_ = new std::vector<char>();
    cur_->reserve(batch_bytes_ + 4096);
    thread_ = std::thread([this] { Run(); });
  }

  ~PerfReader() override { Stop(); }

private:
  static enum bpf_perf_event_ret OnEvent(void *ctx, int cpu, struct perf_event_header *e) {
    PerfReader *r = (PerfReader *)ctx;
    if (e->type == PERF_RECORD_SAMPLE) {
      struct {
        struct perf_event_header h;
        uint32_t size;
        char data[];
      } *s = (decltype(s))e;
      size_t at = r->cur_->size();
      r->cur_->resize(at + 4 + s->size);
      memcpy(r->cur_->data() + at, &s->size, 4);
      memcpy(r->cur_->data() + at + 4, s->data, s->size);
      if (r->cur_records_++ == 0) r->first_at_ = std::chrono::steady_clock::now();
      r->records_++;
    } else if (e->type == PERF_RECORD_LOST) {
      struct {
        struct perf_event_header h;
        uint64_t id;
        uint64_t lost;
      } *l = (decltype(l))e;
      r->cur_lost_ += l->lost;
      r->lost_ += l->lost;
    }
    return LIBBPF_PERF_EVENT_CONT;
  }

  void Run() {
    int poll_ms = flush_ms_ > 0 ? (int)flush_ms_ : 1;
    while (!stop_) {
      int n = perf_buffer__poll(pb_, poll_ms);
      if (n < 0 && n != -EINTR) {
        poll_errors_++;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (n == 0) perf_buffer__consume(pb_);  // below the watermark: drain what waits
      bool due = cur_->size() >= batch_bytes_ || cur_lost_ > 0 ||
                 (cur_records_ > 0 && std::chrono::steady_clock::now() - first_at_ >= std::chrono::milliseconds(flush_ms_));
      if (due && (cur_records_ > 0 || cur_lost_ > 0)) Flush();
    }
  }

  void Flush() {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (credits_ == 0) credit_waits_++;
      cv_.wait(lk, [this] { return credits_ > 0 || stop_; });
      if (stop_) return;
      credits_--;
    }
    Batch *b = new Batch{cur_, cur_records_, cur_lost_};
    batches_++;
    cur_ = new std::vector<char>();
    cur_->reserve(batch_bytes_ + 4096);
    cur_records_ = 0;
    cur_lost_ = 0;
    napi_status st = tsfn_.NonBlockingCall(b, [](Napi::Env env, Napi::Function cb, Batch *b) {
      if (env == nullptr) {
        delete b->data;
        delete b;
        return;
      }
      std::vector<char> *v = b->data;
      Napi::Buffer<char> buf = Napi::Buffer<char>::New(env, v->data(), v->size(), [](Napi::Env, char *, std::vector<char> *v) { delete v; }, v);
      uint32_t records = b->records;
      double lost = (double)b->lost;
      delete b;
      cb.Call({buf, Napi::Number::New(env, records), Napi::Number::New(env, lost)});
    });
    if (st != napi_ok) {
      delete b->data;
      delete b;
    }
  }

  void Stop() {
    if (!pb_) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    perf_buffer__free(pb_);
    pb_ = nullptr;
    delete cur_;
    cur_ = nullptr;
    tsfn_.Release();
  }

  Napi::Value Ack(const Napi::CallbackInfo &info) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (credits_ == 0) credits_ = 1;
    }
    cv_.notify_one();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Stop();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", (double)records_.load());
    o.Set("lost", (double)lost_.load());
    o.Set("batches", (double)batches_.load());
    o.Set("creditWaits", (double)credit_waits_.load());
    o.Set("pollErrors", (double)poll_errors_.load());
    return o;
  }

  struct perf_buffer *pb_ = nullptr;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int credits_ = 1;
  uint32_t batch_bytes_ = 65536;
  uint32_t flush_ms_ = 2;
  // Owned by the reader thread.
  std::vector<char> *cur_ = nullptr;
  uint32_t cur_records_ = 0;
  uint64_t cur_lost_ = 0;
  std::chrono::steady_clock::time_point first_at_;
  // Read by stats() from the JS thread.
  std::atomic<uint64_t> records_{0}, lost_{0}, batches_{0}, credit_waits_{0}, poll_errors_{0};
};

Napi::Object InitReader(Napi::Env env, Napi::Object exports) {
  exports.Set("PerfReader", PerfReader::Define(env));
  return exports;
}

}  // namespace ihr
