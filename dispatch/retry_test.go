package dispatch_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry/dispatch"
)

// durationTolerance absorbs the float-to-Duration truncation of DefaultBackoff.
const durationTolerance = time.Millisecond

func TestDefaultBackoffSchedule(t *testing.T) {
	// e^(2.5·n) seconds, written out so the test does not reuse the formula.
	cases := []struct {
		n    int
		want time.Duration
	}{
		{1, seconds(12.182493960703473)},
		{2, seconds(148.4131591025766)},
		{3, seconds(1808.0424144560632)},
		{4, seconds(22026.465794806718)},
		{5, 24 * time.Hour}, // e^12.5 s is about 74.5 h
		{6, 24 * time.Hour}, // e^15 s is about 908 h
	}
	for _, c := range cases {
		got := dispatch.DefaultBackoff(c.n)
		if diff := (got - c.want).Abs(); diff > durationTolerance {
			t.Errorf("DefaultBackoff(%d) = %v, want %v (±%v)", c.n, got, c.want, durationTolerance)
		}
	}
}

func TestDefaultBackoffMonotonicAndCapped(t *testing.T) {
	previous := time.Duration(0)
	for n := 1; n <= 1000; n++ {
		got := dispatch.DefaultBackoff(n)
		if got < previous {
			t.Fatalf("DefaultBackoff(%d) = %v is less than DefaultBackoff(%d) = %v", n, got, n-1, previous)
		}
		if got > dispatch.MaxRetryDelay {
			t.Fatalf("DefaultBackoff(%d) = %v exceeds MaxRetryDelay %v", n, got, dispatch.MaxRetryDelay)
		}
		previous = got
	}
	if got := dispatch.DefaultBackoff(1000); got != dispatch.MaxRetryDelay {
		t.Errorf("DefaultBackoff(1000) = %v, want the cap %v", got, dispatch.MaxRetryDelay)
	}
}

func TestDefaultBackoffBelowOne(t *testing.T) {
	first := dispatch.DefaultBackoff(1)
	for _, n := range []int{0, -1, -100} {
		if got := dispatch.DefaultBackoff(n); got != first {
			t.Errorf("DefaultBackoff(%d) = %v, want the first-retry delay %v", n, got, first)
		}
	}
}

func TestRetryAfterValues(t *testing.T) {
	// A whole second keeps HTTP dates, which have one-second resolution, exact.
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	httpDate := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }

	cases := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"seconds", "120", 120 * time.Second, true},
		{"seconds with spaces", "  7 ", 7 * time.Second, true},
		{"zero is immediate", "0", 0, true},
		{"one day in seconds", "86400", 24 * time.Hour, true},
		{"HTTP date ahead", httpDate(90 * time.Second), 90 * time.Second, true},
		{"HTTP date in the past is immediate", httpDate(-time.Hour), 0, true},
		{"Go duration", "6m5s", 6*time.Minute + 5*time.Second, true},
		{"Go duration with fraction", "1.5s", 1500 * time.Millisecond, true},
		{"Go duration of zero", "0s", 0, true},
		{"seconds beyond one day", "86401", 0, false},
		{"seconds that overflow int64", "99999999999999999999", 0, false},
		{"max int64 seconds", "9223372036854775807", 0, false},
		{"Go duration beyond one day", "25h", 0, false},
		{"HTTP date beyond one day", httpDate(25 * time.Hour), 0, false},
		{"negative seconds", "-5", 0, false},
		{"negative Go duration", "-1s", 0, false},
		{"garbage", "soon", 0, false},
		{"number without unit", "1.5", 0, false},
		{"empty", "", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("Retry-After", c.value)
			got, ok := dispatch.RetryAfter(h, now)
			if ok != c.wantOK {
				t.Fatalf("RetryAfter(Retry-After: %q) ok = %v, want %v (delay %v)", c.value, ok, c.wantOK, got)
			}
			if ok && got != c.want {
				t.Errorf("RetryAfter(Retry-After: %q) = %v, want %v", c.value, got, c.want)
			}
		})
	}
}

func TestRetryAfterHeaderPrecedence(t *testing.T) {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	cases := []struct {
		name   string
		header map[string]string
		want   time.Duration
		wantOK bool
	}{
		{
			name:   "no header",
			header: map[string]string{},
			wantOK: false,
		},
		{
			name: "Retry-After wins over every rate-limit header",
			header: map[string]string{
				"Retry-After": "1", "X-RateLimit-Reset": "2", "X-RateLimit-Reset-Requests": "3", "X-RateLimit-Reset-Tokens": "4",
			},
			want: time.Second, wantOK: true,
		},
		{
			name: "X-RateLimit-Reset wins over the request and token resets",
			header: map[string]string{
				"X-RateLimit-Reset": "2", "X-RateLimit-Reset-Requests": "3", "X-RateLimit-Reset-Tokens": "4",
			},
			want: 2 * time.Second, wantOK: true,
		},
		{
			name:   "X-RateLimit-Reset-Requests wins over the token reset",
			header: map[string]string{"X-RateLimit-Reset-Requests": "3s", "X-RateLimit-Reset-Tokens": "4s"},
			want:   3 * time.Second, wantOK: true,
		},
		{
			name:   "X-RateLimit-Reset-Tokens alone",
			header: map[string]string{"X-RateLimit-Reset-Tokens": "6m0s"},
			want:   6 * time.Minute, wantOK: true,
		},
		{
			name:   "garbage falls through to the next header",
			header: map[string]string{"Retry-After": "later", "X-RateLimit-Reset": "5"},
			want:   5 * time.Second, wantOK: true,
		},
		{
			name:   "negative value falls through to the next header",
			header: map[string]string{"Retry-After": "-5", "X-RateLimit-Reset-Tokens": "8"},
			want:   8 * time.Second, wantOK: true,
		},
		{
			// The first parseable header decides, so a later usable header
			// does not replace a value beyond one day.
			name:   "value beyond one day in the first header is not used",
			header: map[string]string{"Retry-After": "172800", "X-RateLimit-Reset": "5"},
			wantOK: false,
		},
		{
			name:   "lower-case header names",
			header: map[string]string{"x-ratelimit-reset": "9"},
			want:   9 * time.Second, wantOK: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for name, value := range c.header {
				h.Set(name, value)
			}
			got, ok := dispatch.RetryAfter(h, now)
			if ok != c.wantOK {
				t.Fatalf("RetryAfter(%v) ok = %v, want %v (delay %v)", c.header, ok, c.wantOK, got)
			}
			if ok && got != c.want {
				t.Errorf("RetryAfter(%v) = %v, want %v", c.header, got, c.want)
			}
		})
	}
}

func TestRetryPolicyDelayPrecedence(t *testing.T) {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	retryAfter := func(v string) http.Header { return http.Header{"Retry-After": {v}} }

	// The backoff returns n hours, so its result shows which n it received.
	policy := dispatch.RetryPolicy{Backoff: func(n int) time.Duration { return time.Duration(n) * time.Hour }}

	cases := []struct {
		name    string
		retried int
		expr    string
		header  http.Header
		want    time.Duration
	}{
		{"header wins over expression", 0, "1000", retryAfter("7"), 7 * time.Second},
		{"header wins over backoff", 2, "", retryAfter("7"), 7 * time.Second},
		{"header of zero wins and is immediate", 1, "1000", retryAfter("0"), 0},
		{"unusable header falls back to expression", 0, "1000", retryAfter("soon"), time.Second},
		{"header beyond one day falls back to expression", 0, "1000", retryAfter("86401"), time.Second},
		{"header beyond one day falls back to backoff", 0, "", retryAfter("86401"), time.Hour},
		{"expression wins over backoff", 0, "2500", nil, 2500 * time.Millisecond},
		{"expression gets 0 before the first retry", 0, "1000 * (retried + 1)", nil, time.Second},
		{"expression gets retries done so far", 2, "1000 * (retried + 1)", nil, 3 * time.Second},
		{"invalid expression falls back to backoff", 1, "pow(", nil, 2 * time.Hour},
		{"backoff gets 1 for the first retry", 0, "", nil, time.Hour},
		{"backoff gets retried plus one", 3, "", nil, 4 * time.Hour},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := policy.Delay(c.retried, c.expr, c.header, now)
			if got != c.want {
				t.Errorf("Delay(retried=%d, expr=%q, header=%v) = %v, want %v", c.retried, c.expr, c.header, got, c.want)
			}
		})
	}
}

func TestRetryPolicyDelayDefaultBackoff(t *testing.T) {
	var policy dispatch.RetryPolicy
	now := time.Now()
	for retried := 0; retried < 6; retried++ {
		got := policy.Delay(retried, "", nil, now)
		if want := dispatch.DefaultBackoff(retried + 1); got != want {
			t.Errorf("Delay(retried=%d) with no Backoff = %v, want DefaultBackoff(%d) = %v", retried, got, retried+1, want)
		}
	}
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}
