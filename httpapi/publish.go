package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/duration"
	"github.com/ferryhq/ferry/retrydelay"
	"github.com/ferryhq/ferry/store"
)

// Limits of publish headers.
const (
	// MaxDelay is the longest Upstash-Delay accepted, as on QStash's
	// pay-as-you-go plan.
	MaxDelay = 365 * 24 * time.Hour

	// MaxRetries is the largest Upstash-Retries accepted.
	MaxRetries = 100

	// MaxTimeout is the longest Upstash-Timeout accepted, as on QStash's
	// pay-as-you-go plan.
	MaxTimeout = 2 * time.Hour

	// maxDeduplicationID is the longest Upstash-Deduplication-Id accepted.
	maxDeduplicationID = 512
)

// allowedMethods are the delivery methods Upstash-Method accepts.
var allowedMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

// publishResponse is the JSON answer to a publish.
type publishResponse struct {
	MessageID    string `json:"messageId"`
	Deduplicated bool   `json:"deduplicated,omitempty"`
}

// handlePublish serves POST /v2/publish/{destination}.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	dest, err := parseDestination(requestTarget(r), "/v2/publish/")
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	now := s.cfg.Now()
	m, err := s.buildMessage(r, dest, body, now)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	res, err := s.cfg.Store.MessageInsert(r.Context(), &store.MessageInsertParams{
		Message: m, DeduplicationWindow: s.cfg.DeduplicationWindow, Now: now,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if res.Deduplicated {
		writeJSON(w, http.StatusAccepted, publishResponse{MessageID: res.MessageID, Deduplicated: true})
		return
	}

	s.cfg.Metrics.published()
	// A delayed message may be due before the dispatcher's next planned
	// look, so it is woken for every publish.
	s.notify()
	writeJSON(w, http.StatusOK, publishResponse{MessageID: res.MessageID})
}

// readBody reads the request body up to the configured maximum.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, ferry.Errorf(ferry.ETOOLARGE, "request body exceeds the maximum of %d bytes; send a smaller body or raise --max-body-bytes", s.cfg.MaxBodyBytes)
	} else if err != nil {
		return nil, ferry.Errorf(ferry.EINVALID, "reading the request body failed: %v", err)
	}
	return body, nil
}

// headerSource looks up publish settings in the request headers, then in
// the upstash-* query parameters of the destination.
type headerSource struct {
	header http.Header
	query  map[string][]string
}

// get returns the first value of the setting name, trimmed. A setting that
// is absent or blank returns false, so "Upstash-Retries: " means the same
// as no header for every setting.
func (h headerSource) get(name string) (string, bool) {
	if values, ok := h.header[textproto.CanonicalMIMEHeaderKey(name)]; ok && len(values) > 0 {
		v := strings.TrimSpace(values[0])
		return v, v != ""
	}

	// Keys are searched in sorted order, so when a query has both
	// upstash-delay and Upstash-Delay, the same one wins on every request.
	keys := make([]string, 0, len(h.query))
	for key := range h.query {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if values := h.query[key]; strings.EqualFold(key, name) && len(values) > 0 {
			v := strings.TrimSpace(values[0])
			return v, v != ""
		}
	}
	return "", false
}

// buildMessage validates the publish headers and returns the message to
// store.
func (s *Server) buildMessage(r *http.Request, dest *destination, body []byte, now time.Time) (*ferry.Message, error) {
	src := headerSource{header: r.Header, query: dest.Config}
	m := &ferry.Message{
		ID:         dispatch.NewMessageID(),
		URL:        dest.URL,
		Method:     http.MethodPost,
		Body:       body,
		MaxRetries: s.cfg.DefaultRetries,
		CreatedAt:  now,
		NotBefore:  now,
		CallerIP:   callerIP(r),
	}

	if v, ok := src.get("Upstash-Method"); ok {
		method := strings.ToUpper(v)
		if !slices.Contains(allowedMethods, method) {
			return nil, invalidHeader("Upstash-Method", v, "one of "+strings.Join(allowedMethods, ", "))
		}
		m.Method = method
	}

	if err := parseSchedule(src, m, now); err != nil {
		return nil, err
	}

	if v, ok := src.get("Upstash-Retries"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxRetries {
			return nil, invalidHeader("Upstash-Retries", v, "an integer from 0 to "+strconv.Itoa(MaxRetries))
		}
		m.MaxRetries = n
	}

	if v, ok := src.get("Upstash-Retry-Delay"); ok && v != "" {
		if _, err := retrydelay.Parse(v); err != nil {
			return nil, ferry.Errorf(ferry.EINVALID, "invalid Upstash-Retry-Delay header: %v", err)
		}
		m.RetryDelayExpr = v
	}

	if v, ok := src.get("Upstash-Timeout"); ok && v != "" {
		d, err := parseDurationHeader("Upstash-Timeout", v)
		if err != nil {
			return nil, err
		}
		if d <= 0 || d > MaxTimeout {
			return nil, invalidHeader("Upstash-Timeout", v, "a duration from 1s to "+duration.Format(MaxTimeout))
		}
		m.Timeout = d
	}

	if v, ok := src.get("Upstash-Label"); ok {
		m.Labels = splitList(v)
	}

	forwardAll := false
	if v, ok := src.get("Upstash-Header-Forward"); ok {
		b, err := parseBool(v)
		if err != nil {
			return nil, invalidHeader("Upstash-Header-Forward", v, "true or false")
		}
		forwardAll = b
	}
	m.Header = forwardedHeaders(r.Header, forwardAll)

	dedupID, err := deduplicationID(src, m)
	if err != nil {
		return nil, err
	}
	m.DeduplicationID = dedupID
	return m, nil
}

// parseSchedule sets m.NotBefore from Upstash-Not-Before, which wins, or
// Upstash-Delay.
func parseSchedule(src headerSource, m *ferry.Message, now time.Time) error {
	if v, ok := src.get("Upstash-Not-Before"); ok && v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 0 {
			return invalidHeader("Upstash-Not-Before", v, "a Unix time in seconds, such as "+strconv.FormatInt(now.Add(time.Minute).Unix(), 10))
		}
		at := time.Unix(secs, 0)
		if at.Sub(now) > MaxDelay {
			return invalidHeader("Upstash-Not-Before", v, "a time at most "+duration.Format(MaxDelay)+" ahead")
		}
		if at.After(now) {
			m.NotBefore = at
		}
		return nil
	}

	if v, ok := src.get("Upstash-Delay"); ok && v != "" {
		d, err := parseDurationHeader("Upstash-Delay", v)
		if err != nil {
			return err
		}
		if d > MaxDelay {
			return invalidHeader("Upstash-Delay", v, "a delay of at most "+duration.Format(MaxDelay))
		}
		m.NotBefore = now.Add(d)
	}
	return nil
}

// parseDurationHeader parses the value v of the duration header name. The
// parser's error repeats v in full, so an invalid value longer than
// maxEchoedBytes gets a message that repeats only its start.
func parseDurationHeader(name, v string) (time.Duration, error) {
	d, err := duration.Parse(v)
	if err == nil {
		return d, nil
	}
	if len(v) > maxEchoedBytes {
		return 0, invalidHeader(name, v, "a duration such as 30s or 1d10h30m")
	}
	return 0, ferry.Errorf(ferry.EINVALID, "invalid %s header: %v", name, err)
}

// deduplicationID returns the message's deduplication key: the
// Upstash-Deduplication-Id, or a content hash when content-based
// deduplication is on, or empty.
func deduplicationID(src headerSource, m *ferry.Message) (string, error) {
	if v, ok := src.get("Upstash-Deduplication-Id"); ok && v != "" {
		if len(v) > maxDeduplicationID {
			return "", invalidHeader("Upstash-Deduplication-Id", v, "at most "+strconv.Itoa(maxDeduplicationID)+" bytes")
		}
		return "id:" + v, nil
	}

	v, ok := src.get("Upstash-Content-Based-Deduplication")
	if !ok || v == "" {
		return "", nil
	}
	on, err := parseBool(v)
	if err != nil {
		return "", invalidHeader("Upstash-Content-Based-Deduplication", v, "true or false")
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

// forwardedHeaders returns the headers to deliver: every
// Upstash-Forward-<Name> as <Name>, Content-Type, and, when all is true,
// every other request header that is neither hop-by-hop, the credentials,
// nor an Upstash-* header. Upstash-Forward-<Name> wins over a plain <Name>,
// so Upstash-Forward-Content-Type replaces the request's Content-Type.
func forwardedHeaders(h http.Header, all bool) http.Header {
	out := http.Header{}
	const prefix = "Upstash-Forward-"
	for name, values := range h {
		switch {
		case len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix):
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
		if len(name) > len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			out[textproto.CanonicalMIMEHeaderKey(name[len(prefix):])] = append([]string(nil), values...)
		}
	}
	return out
}

// callerIP returns the host part of the client's address.
func callerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// parseBool accepts true and false in any letter case, as the Python SDK
// sends "True".
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// splitList splits a comma-separated header value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// invalidHeader returns the error for a header value outside its allowed
// range.
func invalidHeader(name, value, allowed string) error {
	return ferry.Errorf(ferry.EINVALID, "invalid %s header %q: expected %s", name, truncate(value), allowed)
}
