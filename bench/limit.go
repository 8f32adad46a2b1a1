package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limitSystem is the machine limit for Ferry's HTTP path: the two HTTP
// exchanges that one Ferry message needs, and nothing else. A plain
// net/http server responds to a publish request at once and queues its
// sequence number in memory. cfg.workers goroutines take numbers from the
// queue and POST each to the sink. Nothing is stored.
var limitSystem = &queueSystem{
	name:     "http-limit",
	describe: "net/http publish request + delivery request on loopback, no storage",
	start:    startLimit,
}

type runningLimit struct {
	client   *http.Client
	url      string
	srv      *http.Server
	sink     *sink
	queue    chan int64
	cancel   context.CancelFunc
	delivery sync.WaitGroup
}

func startLimit(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error) {
	sk, err := startSink(worked)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sk.close()
		return nil, fmt.Errorf("listen for the limit server on 127.0.0.1: %w", err)
	}

	r := &runningLimit{
		client: newHTTPClient(cfg.producers),
		url:    "http://" + ln.Addr().String() + "/publish",
		sink:   sk,
		// The harness takes one of maxPending slots before each insert and
		// frees it when the work begins, so at most maxPending numbers wait
		// here unless inserts fail. Twice that keeps a publish from waiting
		// for room.
		queue: make(chan int64, cfg.maxPending*2),
	}
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			seq, err := readSeq(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.queue <- seq
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"messageId":"msg_` + strconv.FormatInt(seq, 10) + `"}`))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go r.srv.Serve(ln)

	deliverCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	deliveryClient := newHTTPClient(cfg.workers)
	for range cfg.workers {
		r.delivery.Go(func() {
			for {
				select {
				case seq := <-r.queue:
					postSeq(deliverCtx, deliveryClient, sk.url, "", seq)
				case <-deliverCtx.Done():
					return
				}
			}
		})
	}
	return r, nil
}

func (r *runningLimit) insert(ctx context.Context, seq int64) error {
	return postSeq(ctx, r.client, r.url, "", seq)
}

func (r *runningLimit) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.srv.Shutdown(ctx)
	r.cancel()
	r.delivery.Wait()
	r.sink.close()
}
