package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/client"
)

// drainTimeout bounds the wait for deliveries after the publishers stop.
const drainTimeout = 60 * time.Second

// runPublishMode measures acknowledged publishes per second. The messages
// are delayed by a day, so no delivery competes with the publishes; on a
// server at --url they are cancelled afterwards.
func runPublishMode(ctx context.Context, target *benchTarget, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	label := "ferry-bench-" + randomHex(6)
	header := http.Header{"Upstash-Delay": {"1d"}, "Upstash-Label": {label}}
	// The destination is never called: the run ends before the delay does.
	pub := newBenchPublisher(target.url, target.token, "http://127.0.0.1:9/never", opts.concurrency, header)

	var seq, published atomic.Int64
	var errs errorSample
	var latency latencyRecorder
	start := time.Now()
	deadline := start.Add(opts.duration)
	prog.set(func() string {
		return fmt.Sprintf("publish  %s/%s  %d acknowledged", since(start), opts.duration, published.Load())
	})
	defer prog.set(nil)

	var wg sync.WaitGroup
	for range opts.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				sent := time.Now()
				if _, err := pub.publish(ctx, seq.Add(1)); err != nil {
					errs.add(err)
					continue
				}
				if at := time.Now(); !at.After(deadline) {
					published.Add(1)
					latency.add(at.Sub(sent))
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &benchResult{
		Mode:           "publish",
		Available:      true,
		Published:      published.Load(),
		PublishRate:    float64(published.Load()) / opts.duration.Seconds(),
		PublishLatency: latency.summary(),
		Errors:         errs.count.Load(),
		FirstError:     errs.text(),
	}
	if target.dsn == "" {
		c := client.New(target.url, target.token)
		if _, err := c.MessagesCancel(ctx, &client.Filter{Labels: []string{label}}); err != nil {
			return nil, fmt.Errorf("cancel the delayed benchmark messages labelled %s: %w; cancel them with ferry messages cancel", label, err)
		}
	}
	return res, nil
}

// runEndToEndMode measures messages published and delivered per second,
// optionally under a CPU profile.
func runEndToEndMode(ctx context.Context, target *benchTarget, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("create --cpuprofile file: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	res, err := measureEndToEnd(ctx, target, opts, prog, "e2e")
	if err != nil {
		return nil, err
	}
	res.Mode = "e2e"
	return res, nil
}

// measureEndToEnd publishes from --concurrency goroutines for --duration,
// with at most --max-pending messages published but not yet received, and
// measures deliveries to a sink. It then waits for the remaining messages.
func measureEndToEnd(ctx context.Context, target *benchTarget, opts *benchOptions, prog *benchProgress, name string) (*benchResult, error) {
	slots := make(chan struct{}, opts.maxPending)
	start := time.Now()
	deadline := start.Add(opts.duration)
	tracker := newDeliveryTracker(start, deadline, func() { <-slots })

	sink, err := startSink(tracker.receive)
	if err != nil {
		return nil, err
	}
	defer sink.close()
	pub := newBenchPublisher(target.url, target.token, sink.url, opts.concurrency, nil)

	var seq, published atomic.Int64
	var errs errorSample
	var latency latencyRecorder
	prog.set(func() string {
		return fmt.Sprintf("%s  %s/%s  %d published, %d delivered, %d pending",
			name, since(start), opts.duration, tracker.acked.Load(), tracker.received.Load(), tracker.pending())
	})
	defer prog.set(nil)

	var wg sync.WaitGroup
	for range opts.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				n := seq.Add(1)
				sent := time.Now()
				if _, err := pub.publish(ctx, n); err != nil {
					<-slots
					errs.add(err)
					continue
				}
				at := time.Now()
				if !at.After(deadline) {
					published.Add(1)
					latency.add(at.Sub(sent))
				}
				tracker.ack(n, at)
			}
		})
	}
	wg.Wait()
	undelivered := tracker.waitDrained(ctx, drainTimeout)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	return &benchResult{
		Mode:            name,
		Available:       true,
		Published:       published.Load(),
		PublishRate:     float64(published.Load()) / opts.duration.Seconds(),
		Delivered:       tracker.inWindow.Load(),
		DeliverRate:     float64(tracker.inWindow.Load()) / opts.duration.Seconds(),
		PublishLatency:  latency.summary(),
		DeliveryLatency: tracker.latency.summary(),
		Errors:          errs.count.Load(),
		FirstError:      errs.text(),
		Undelivered:     undelivered,
		Duplicates:      tracker.duplicates.Load(),
	}, nil
}

// openLoop sends rate publishes per second for duration, each at its
// scheduled time whether or not earlier ones got a response. It calls send
// with the sequence number and scheduled time. At most maxInFlight sends
// run at once. A send that waits for a free place keeps its scheduled
// time, so the wait shows in its latency.
func openLoop(ctx context.Context, rate int, duration time.Duration, maxInFlight int, send func(seq int64, scheduled time.Time)) {
	total := int64(float64(rate) * duration.Seconds())
	start := time.Now()
	inFlight := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for i := range total {
		scheduled := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if wait := time.Until(scheduled); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		inFlight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inFlight }()
			send(i+1, scheduled)
		})
	}
	wg.Wait()
}

// runLatencyMode measures latency at a fixed offered rate.
func runLatencyMode(ctx context.Context, target *benchTarget, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	start := time.Now()
	tracker := newDeliveryTracker(start, time.Time{}, nil)
	sink, err := startSink(tracker.receive)
	if err != nil {
		return nil, err
	}
	defer sink.close()
	pub := newBenchPublisher(target.url, target.token, sink.url, 256, nil)

	var errs errorSample
	var latency latencyRecorder
	prog.set(func() string {
		return fmt.Sprintf("latency  %s/%s  %d published, %d delivered at %d/s offered",
			since(start), opts.duration, tracker.acked.Load(), tracker.received.Load(), opts.rate)
	})
	defer prog.set(nil)

	openLoop(ctx, opts.rate, opts.duration, 4096, func(seq int64, scheduled time.Time) {
		if _, err := pub.publish(ctx, seq); err != nil {
			errs.add(err)
			return
		}
		at := time.Now()
		latency.add(at.Sub(scheduled))
		tracker.ack(seq, at)
	})
	elapsed := time.Since(start)
	undelivered := tracker.waitDrained(ctx, drainTimeout)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	return &benchResult{
		Mode:            "latency",
		Available:       true,
		OfferedRate:     opts.rate,
		Published:       tracker.acked.Load(),
		PublishRate:     float64(tracker.acked.Load()) / elapsed.Seconds(),
		Delivered:       tracker.matched.Load(),
		PublishLatency:  latency.summary(),
		DeliveryLatency: tracker.latency.summary(),
		Errors:          errs.count.Load(),
		FirstError:      errs.text(),
		Undelivered:     undelivered,
		Duplicates:      tracker.duplicates.Load(),
	}, nil
}

// runDelayMode publishes messages with Upstash-Delay at a fixed rate and
// measures how late each arrives: its receipt time minus the notBefore
// that the server stored, read back through GET /v2/messages/{id}.
func runDelayMode(ctx context.Context, target *benchTarget, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	var mu sync.Mutex
	received := map[int64]time.Time{}
	ids := map[int64]string{}
	var duplicates atomic.Int64
	sink, err := startSink(func(seq int64, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := received[seq]; dup {
			duplicates.Add(1)
			return
		}
		received[seq] = at
	})
	if err != nil {
		return nil, err
	}
	defer sink.close()
	header := http.Header{"Upstash-Delay": {strconv.Itoa(int(opts.delay/time.Second)) + "s"}}
	pub := newBenchPublisher(target.url, target.token, sink.url, 64, header)

	var errs errorSample
	start := time.Now()
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(ids), len(received)
	}
	prog.set(func() string {
		published, delivered := counts()
		return fmt.Sprintf("delay  %s/%s  %d published, %d delivered, delay %s", since(start), opts.duration+opts.delay, published, delivered, opts.delay)
	})
	defer prog.set(nil)

	openLoop(ctx, opts.delayRate, opts.duration, 1024, func(seq int64, _ time.Time) {
		id, err := pub.publish(ctx, seq)
		if err != nil {
			errs.add(err)
			return
		}
		mu.Lock()
		ids[seq] = id
		mu.Unlock()
	})

	// Wait for the last delay to pass and its deliveries to arrive.
	deadline := time.Now().Add(opts.delay + drainTimeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if published, delivered := counts(); delivered >= published {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	prog.set(func() string { return "delay  reading the scheduled times back" })
	lateness, undelivered, err := readLateness(ctx, pub, target.url, ids, received)
	if err != nil {
		return nil, err
	}
	return &benchResult{
		Mode:        "delay",
		Available:   true,
		Note:        "delay " + opts.delay.String(),
		OfferedRate: opts.delayRate,
		Published:   int64(len(ids)),
		Delivered:   int64(len(lateness)),
		DelayError:  summarize(lateness),
		Errors:      errs.count.Load(),
		FirstError:  errs.text(),
		Undelivered: undelivered,
		Duplicates:  duplicates.Load(),
	}, nil
}

// readLateness reads each received message's notBefore (Unix milliseconds)
// and returns receipt minus notBefore for each, and the number of
// published messages never received. Because notBefore is truncated to
// the millisecond, each value may be up to 1 ms larger than the true one.
func readLateness(ctx context.Context, pub *benchPublisher, baseURL string, ids map[int64]string, received map[int64]time.Time) ([]time.Duration, int64, error) {
	type job struct {
		id string
		at time.Time
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var lateness []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for j := range jobs {
				var m struct {
					NotBefore int64 `json:"notBefore"`
				}
				err := pub.get(ctx, baseURL, "/v2/messages/"+j.id, &m)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("read message %s: %w", j.id, err)
				} else if err == nil {
					lateness = append(lateness, j.at.Sub(time.UnixMilli(m.NotBefore)))
				}
				mu.Unlock()
			}
		})
	}

	var undelivered int64
	for seq, id := range ids {
		at, ok := received[seq]
		if !ok {
			undelivered++
			continue
		}
		jobs <- job{id: id, at: at}
	}
	close(jobs)
	wg.Wait()
	return lateness, undelivered, firstErr
}

// since returns the whole seconds since start, for progress lines.
func since(start time.Time) time.Duration {
	return time.Since(start).Truncate(time.Second)
}
