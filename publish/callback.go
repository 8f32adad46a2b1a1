package publish

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
)

// Header prefixes that configure callback messages.
const (
	CallbackPrefix        = "Upstash-Callback-"
	FailureCallbackPrefix = "Upstash-Failure-Callback-"
)

// ApplyCallbacks reads Upstash-Callback and Upstash-Failure-Callback with
// their configuration headers from h into m, and validates them as the
// settings of the callback messages they configure.
func ApplyCallbacks(m *ferry.Message, h http.Header, now time.Time) error {
	src := Source{Header: h}
	if v, ok := src.Get("Upstash-Callback"); ok {
		if err := ValidateURL("Upstash-Callback", v); err != nil {
			return err
		}
		m.Callback = v
		m.CallbackHeader = prefixed(h, CallbackPrefix)
		if err := Apply(&ferry.Message{}, CallbackSource(m.CallbackHeader, CallbackPrefix), now); err != nil {
			return err
		}
	}
	if v, ok := src.Get("Upstash-Failure-Callback"); ok {
		if err := ValidateURL("Upstash-Failure-Callback", v); err != nil {
			return err
		}
		m.FailureCallback = v
		m.FailureCallbackHeader = prefixed(h, FailureCallbackPrefix)
		if err := Apply(&ferry.Message{}, CallbackSource(m.FailureCallbackHeader, FailureCallbackPrefix), now); err != nil {
			return err
		}
	}
	return nil
}

// prefixed returns the headers of h whose names start with prefix, or nil.
func prefixed(h http.Header, prefix string) http.Header {
	var out http.Header
	for name, values := range h {
		if len(name) > len(prefix) && hasPrefixFold(name, prefix) {
			if out == nil {
				out = http.Header{}
			}
			out[textproto.CanonicalMIMEHeaderKey(name)] = append([]string(nil), values...)
		}
	}
	return out
}

// CallbackSource maps stored callback headers to the settings of the
// callback message: Upstash-Callback-<Rest> becomes Upstash-<Rest>, so
// Upstash-Callback-Retries sets its retries and
// Upstash-Callback-Forward-<Name> forwards <Name>.
func CallbackSource(h http.Header, prefix string) Source {
	out := http.Header{}
	for name, values := range h {
		if len(name) > len(prefix) && hasPrefixFold(name, prefix) {
			out[textproto.CanonicalMIMEHeaderKey("Upstash-"+name[len(prefix):])] = values
		}
	}
	return Source{Header: out}
}

// NewCallback returns the message that reports to src's callback (or
// failure callback) with body. It is an ordinary signed, retried message
// that gets no callbacks of its own; its retries default to src's.
func NewCallback(src *ferry.Message, failure bool, body []byte, now time.Time) *ferry.Message {
	target, header, prefix := src.Callback, src.CallbackHeader, CallbackPrefix
	if failure {
		target, header, prefix = src.FailureCallback, src.FailureCallbackHeader, FailureCallbackPrefix
	}

	cb := &ferry.Message{
		ID:         ferry.NewMessageID(),
		URL:        target,
		Method:     http.MethodPost,
		Body:       body,
		MaxRetries: src.MaxRetries,
		NotBefore:  now,
		CreatedAt:  now,
		CallerIP:   src.CallerIP,
		Labels:     src.Labels,
		CallbackOf: src.ID,
	}
	settings := CallbackSource(header, prefix)

	// The settings were validated at publish time; a value that fails now
	// keeps the default for that setting.
	_ = Apply(cb, settings, now)
	cb.Header = ForwardedHeaders(settings.Header, false)
	cb.Header.Set("Content-Type", "application/json")
	return cb
}

// ValidateURL checks that v, the value of header name, is an absolute http
// or https URL with a host.
func ValidateURL(name, v string) error {
	lower := strings.ToLower(v)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		return InvalidHeader(name, v, "an http:// or https:// URL")
	}
	u, err := url.Parse(v)
	if err != nil || u.Hostname() == "" {
		return InvalidHeader(name, v, "an http:// or https:// URL with a host")
	}
	return nil
}
