package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxPublishTries bounds the tries of one message: one against the first
// server and one against the restarted server.
const maxPublishTries = 2

// restartWait bounds how long a publisher waits for the restarted server.
const restartWait = 60 * time.Second

// publishLoad publishes total messages from several goroutines. A publish
// that fails while the server is down is sent again to the server that
// restarted announces.
type publishLoad struct {
	dest  string
	total int

	base     atomic.Pointer[string]
	restart  chan struct{}
	sequence atomic.Int64
	done     chan struct{}

	mu       sync.Mutex
	accepted map[string]int // message id to sequence number
	errs     []error
}

// startPublishLoad starts the given number of publisher goroutines, which
// share total messages to dest through the API at baseURL. They stop when
// ctx ends.
func startPublishLoad(ctx context.Context, baseURL, dest string, total, publishers int) *publishLoad {
	l := &publishLoad{
		dest:     dest,
		total:    total,
		restart:  make(chan struct{}),
		done:     make(chan struct{}),
		accepted: map[string]int{},
	}
	l.base.Store(&baseURL)

	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := int(l.sequence.Add(1)) - 1
				if n >= total {
					return
				}
				l.publishOne(ctx, n)
			}
		})
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l
}

// publishOne publishes message n. After a failure it waits for the restart
// and tries again, but a failure against the restarted server is final.
func (l *publishLoad) publishOne(ctx context.Context, n int) {
	body := fmt.Appendf(nil, `{"n":%d}`, n)
	header := http.Header{"Content-Type": {"application/json"}}

	for try := 1; try <= maxPublishTries; try++ {
		base := l.base.Load()
		id, err := publish(ctx, *base, l.dest, body, header)
		if err == nil {
			l.mu.Lock()
			l.accepted[id] = n
			l.mu.Unlock()
			return
		}

		select {
		case <-l.restart:
			if l.base.Load() == base {
				l.fail(fmt.Errorf("publish %d to the restarted server failed: %w", n, err))
				return
			}
		case <-ctx.Done():
			return
		case <-time.After(restartWait):
			l.fail(fmt.Errorf("publish %d failed and no restart followed within %v: %w", n, restartWait, err))
			return
		}
	}
	l.fail(fmt.Errorf("publish %d failed %d times", n, maxPublishTries))
}

func (l *publishLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// restarted sends the publishes that failed, and all later ones, to the
// server at baseURL.
func (l *publishLoad) restarted(baseURL string) {
	l.base.Store(&baseURL)
	close(l.restart)
}

// wait waits up to timeout for every publisher to finish and returns the
// publish errors.
func (l *publishLoad) wait(timeout time.Duration) error {
	select {
	case <-l.done:
	case <-time.After(timeout):
		return fmt.Errorf("publishers still running after %v", timeout)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// acceptedIDs returns a copy of the accepted message ids, each mapped to its
// sequence number.
func (l *publishLoad) acceptedIDs() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make(map[string]int, len(l.accepted))
	for id, n := range l.accepted {
		ids[id] = n
	}
	return ids
}

// acceptedCount returns the number of accepted publishes so far.
func (l *publishLoad) acceptedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}
