package dispatch

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/retrydelay"
)

// MaxRetryDelay caps every computed delay between attempts, as QStash does.
const MaxRetryDelay = 24 * time.Hour

// DefaultBackoff returns the QStash default wait before retry n, where n
// is 1 for the first retry. The wait is e^(2.5·n) seconds capped at one
// day: 12 s, 2 min 28 s, 30 min 8 s, 6 h 7 min, then one day.
func DefaultBackoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	seconds := math.Exp(2.5 * float64(n))
	if seconds >= MaxRetryDelay.Seconds() {
		return MaxRetryDelay
	}
	return time.Duration(seconds * float64(time.Second))
}

// retryAfterHeaders are the response headers that set the next retry's
// delay, checked in this order.
var retryAfterHeaders = []string{"Retry-After", "X-RateLimit-Reset", "X-RateLimit-Reset-Requests", "X-RateLimit-Reset-Tokens"}

// RetryAfter returns the delay that a destination asked for through a
// Retry-After-style header: whole seconds, an HTTP date, or a Go duration
// such as 6m5s. It returns false when no header holds a usable value or
// the value is beyond MaxRetryDelay, in which case the normal backoff
// applies.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	for _, name := range retryAfterHeaders {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		d, ok := parseRetryAfter(v, now)
		if !ok {
			continue
		}
		if d > MaxRetryDelay {
			return 0, false
		}
		return d, true
	}
	return 0, false
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Clamp before converting, so a huge value cannot overflow.
		secs = min(secs, int64(MaxRetryDelay/time.Second)+1)
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, true
	}
	return 0, false
}

// RetryPolicy decides how long to wait before the next attempt.
type RetryPolicy struct {
	// Backoff returns the default delay before retry n (1 for the first
	// retry). Defaults to DefaultBackoff.
	Backoff func(n int) time.Duration
}

// Delay returns the wait before the next attempt of a message that has
// failed retried times before this failure. The destination's
// Retry-After-style headers win, then the message's retry-delay
// expression, then the backoff.
func (p *RetryPolicy) Delay(retried int, expr string, header http.Header, now time.Time) time.Duration {
	if d, ok := RetryAfter(header, now); ok {
		return d
	}
	if expr != "" {
		// The expression was validated at publish time, so a parse error
		// here means stored data changed; fall back to the backoff.
		if e, err := retrydelay.Parse(expr); err == nil {
			return e.Delay(retried)
		}
	}
	backoff := p.Backoff
	if backoff == nil {
		backoff = DefaultBackoff
	}
	return backoff(retried + 1)
}
