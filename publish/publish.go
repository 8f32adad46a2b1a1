// Package publish turns the Upstash-* settings of a QStash request into a
// message. The publish route, callbacks (whose settings come from
// Upstash-Callback-* headers) and dead-letter retries (whose request
// headers override the failed message's settings) share it, so every path
// validates a setting the same way and reports it in the same words.
package publish

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/duration"
	"github.com/ferryhq/ferry/retrydelay"
)

// Limits of publish settings.
const (
	// MaxDelay is the longest Upstash-Delay accepted, as on QStash's
	// pay-as-you-go plan.
	MaxDelay = 365 * 24 * time.Hour

	// MaxRetries is the largest Upstash-Retries accepted.
	MaxRetries = 100

	// MaxTimeout is the longest Upstash-Timeout accepted, as on QStash's
	// pay-as-you-go plan.
	MaxTimeout = 2 * time.Hour

	// MaxDeduplicationID is the longest Upstash-Deduplication-Id accepted.
	MaxDeduplicationID = 512

	// MaxEchoedBytes is the longest client value that an error message
	// repeats in full.
	MaxEchoedBytes = 200
)

// AllowedMethods are the delivery methods Upstash-Method accepts.
var AllowedMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

// Source looks up settings in request headers, then in the upstash-* query
// parameters of a destination (lowercase header names as keys).
type Source struct {
	Header http.Header
	Query  map[string][]string
}

// Get returns the first value of the setting name, trimmed. A setting that
// is absent or blank returns false, so "Upstash-Retries: " means the same
// as no header for every setting.
func (s Source) Get(name string) (string, bool) {
	if values, ok := s.Header[textproto.CanonicalMIMEHeaderKey(name)]; ok && len(values) > 0 {
		v := strings.TrimSpace(values[0])
		return v, v != ""
	}

	// Keys are searched in sorted order, so when a query has both
	// upstash-delay and Upstash-Delay, the same one wins on every request.
	keys := make([]string, 0, len(s.Query))
	for key := range s.Query {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if values := s.Query[key]; strings.EqualFold(key, name) && len(values) > 0 {
			v := strings.TrimSpace(values[0])
			return v, v != ""
		}
	}
	return "", false
}

// Apply sets on m every delivery setting that src carries: method, delay or
// not-before, retries, retry delay, timeout and labels. Settings absent
// from src leave m unchanged. It returns an EINVALID *ferry.Error naming
// the header, the value and what is allowed.
func Apply(m *ferry.Message, src Source, now time.Time) error {
	if v, ok := src.Get("Upstash-Method"); ok {
		method := strings.ToUpper(v)
		if !slices.Contains(AllowedMethods, method) {
			return InvalidHeader("Upstash-Method", v, "one of "+strings.Join(AllowedMethods, ", "))
		}
		m.Method = method
	}

	if err := applySchedule(m, src, now); err != nil {
		return err
	}

	if v, ok := src.Get("Upstash-Retries"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxRetries {
			return InvalidHeader("Upstash-Retries", v, "an integer from 0 to "+strconv.Itoa(MaxRetries))
		}
		m.MaxRetries = n
	}

	if v, ok := src.Get("Upstash-Retry-Delay"); ok {
		if _, err := retrydelay.Parse(v); err != nil {
			return ferry.Errorf(ferry.EINVALID, "invalid Upstash-Retry-Delay header: %v", err)
		}
		m.RetryDelayExpr = v
	}

	if v, ok := src.Get("Upstash-Timeout"); ok {
		d, err := parseDuration("Upstash-Timeout", v)
		if err != nil {
			return err
		}
		if d <= 0 || d > MaxTimeout {
			return InvalidHeader("Upstash-Timeout", v, "a duration from 1s to "+duration.Format(MaxTimeout))
		}
		m.Timeout = d
	}

	if v, ok := src.Get("Upstash-Label"); ok {
		m.Labels = SplitList(v)
	}
	return nil
}

// applySchedule sets m.NotBefore from Upstash-Not-Before, which wins, or
// Upstash-Delay.
func applySchedule(m *ferry.Message, src Source, now time.Time) error {
	if v, ok := src.Get("Upstash-Not-Before"); ok {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 0 {
			return InvalidHeader("Upstash-Not-Before", v, "a Unix time in seconds, such as "+strconv.FormatInt(now.Add(time.Minute).Unix(), 10))
		}
		at := time.Unix(secs, 0)
		if at.Sub(now) > MaxDelay {
			return InvalidHeader("Upstash-Not-Before", v, "a time at most "+duration.Format(MaxDelay)+" ahead")
		}
		m.NotBefore = now
		if at.After(now) {
			m.NotBefore = at
		}
		return nil
	}

	if v, ok := src.Get("Upstash-Delay"); ok {
		d, err := parseDuration("Upstash-Delay", v)
		if err != nil {
			return err
		}
		if d > MaxDelay {
			return InvalidHeader("Upstash-Delay", v, "a delay of at most "+duration.Format(MaxDelay))
		}
		m.NotBefore = now.Add(d)
	}
	return nil
}

// parseDuration parses the value v of the duration header name. The
// parser's error repeats v in full, so an invalid value longer than
// MaxEchoedBytes gets a message that repeats only its start.
func parseDuration(name, v string) (time.Duration, error) {
	d, err := duration.Parse(v)
	if err == nil {
		return d, nil
	}
	if len(v) > MaxEchoedBytes {
		return 0, InvalidHeader(name, v, "a duration such as 30s or 1d10h30m")
	}
	return 0, ferry.Errorf(ferry.EINVALID, "invalid %s header: %v", name, err)
}

// DeduplicationID returns the message's deduplication key: the
// Upstash-Deduplication-Id, or a content hash when content-based
// deduplication is on, or empty.
func DeduplicationID(src Source, m *ferry.Message) (string, error) {
	if v, ok := src.Get("Upstash-Deduplication-Id"); ok {
		if len(v) > MaxDeduplicationID {
			return "", InvalidHeader("Upstash-Deduplication-Id", v, "at most "+strconv.Itoa(MaxDeduplicationID)+" bytes")
		}
		return "id:" + v, nil
	}

	v, ok := src.Get("Upstash-Content-Based-Deduplication")
	if !ok {
		return "", nil
	}
	on, err := ParseBool(v)
	if err != nil {
		return "", InvalidHeader("Upstash-Content-Based-Deduplication", v, "true or false")
	}
	if !on {
		return "", nil
	}

	// The key covers the destination, the body, the content type and the
	// forwarded headers, in a fixed order.
	h := sha256.New()
	io.WriteString(h, m.URL+"\n")
	names := make([]string, 0, len(m.Header))
	for name := range m.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		io.WriteString(h, name+": "+strings.Join(m.Header[name], ", ")+"\n")
	}
	io.WriteString(h, "\n")
	h.Write(m.Body)
	return "content:" + hex.EncodeToString(h.Sum(nil)), nil
}

// hopHeaders are never forwarded in header-forward mode.
var hopHeaders = map[string]bool{
	"Authorization": true, "Connection": true, "Content-Length": true, "Host": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true,
}

const forwardPrefix = "Upstash-Forward-"

// ForwardedHeaders returns the headers to deliver: every
// Upstash-Forward-<Name> as <Name>, Content-Type, and, when all is true,
// every other request header that is neither hop-by-hop, the credentials,
// nor an Upstash-* header. Upstash-Forward-<Name> wins over a plain <Name>,
// so Upstash-Forward-Content-Type replaces the request's Content-Type.
func ForwardedHeaders(h http.Header, all bool) http.Header {
	out := http.Header{}
	for name, values := range h {
		switch {
		case hasPrefixFold(name, forwardPrefix):
			// Copied in the second pass.
		case name == "Content-Type":
			out[name] = append([]string(nil), values...)
		case all && !hopHeaders[name] && !strings.HasPrefix(name, "Upstash-"):
			out[name] = append([]string(nil), values...)
		}
	}

	// The prefixed headers are copied in a second pass because map order
	// is random, and one pass would let either spelling win.
	for name, values := range h {
		if len(name) > len(forwardPrefix) && hasPrefixFold(name, forwardPrefix) {
			out[textproto.CanonicalMIMEHeaderKey(name[len(forwardPrefix):])] = append([]string(nil), values...)
		}
	}
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// ParseBool accepts true and false in any letter case, as the Python SDK
// sends "True".
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// SplitList splits a comma-separated header value, dropping blanks.
func SplitList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// InvalidHeader returns the error for a header value outside its allowed
// range.
func InvalidHeader(name, value, allowed string) error {
	return ferry.Errorf(ferry.EINVALID, "invalid %s header %q: expected %s", name, Truncate(value), allowed)
}

// Truncate shortens a client value echoed in an error message to
// MaxEchoedBytes.
func Truncate(s string) string {
	if len(s) <= MaxEchoedBytes {
		return s
	}
	return s[:MaxEchoedBytes] + "..."
}
