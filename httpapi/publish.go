package httpapi

import (
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
)

// Limits of publish headers, kept here for callers of this package.
const (
	MaxDelay   = publish.MaxDelay
	MaxRetries = publish.MaxRetries
	MaxTimeout = publish.MaxTimeout
)

// handlePublish serves POST /v2/publish/{destination}, where the
// destination is a URL or the name of a URL group.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	target, err := parseTarget(requestTarget(r), "/v2/publish/")
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	status, resp, err := s.accept(r.Context(), &acceptRequest{
		target: target, header: r.Header, body: body, callerIP: callerIP(r),
	}, s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, resp)
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

// buildMessage validates the publish headers and returns the message to
// store.
func (s *Server) buildMessage(r *http.Request, dest *destination, body []byte, now time.Time) (*ferry.Message, error) {
	return s.buildMessageFrom(r.Header, dest, body, callerIP(r), now)
}

// buildMessageFrom is buildMessage for settings in header, which a batch
// item carries in its JSON, and a client address.
func (s *Server) buildMessageFrom(header http.Header, dest *destination, body []byte, caller string, now time.Time) (*ferry.Message, error) {
	src := publish.Source{Header: header, Query: dest.Config}
	m := &ferry.Message{
		ID:         ferry.NewMessageID(),
		URL:        dest.URL,
		Method:     http.MethodPost,
		Body:       body,
		MaxRetries: s.cfg.DefaultRetries,
		CreatedAt:  now,
		NotBefore:  now,
		CallerIP:   caller,
	}
	if err := publish.Apply(m, src, now); err != nil {
		return nil, err
	}
	if err := publish.ApplyCallbacks(m, header, now); err != nil {
		return nil, err
	}

	forwardAll := false
	if v, ok := src.Get("Upstash-Header-Forward"); ok {
		b, err := publish.ParseBool(v)
		if err != nil {
			return nil, publish.InvalidHeader("Upstash-Header-Forward", v, "true or false")
		}
		forwardAll = b
	}
	m.Header = publish.ForwardedHeaders(header, forwardAll)

	dedupID, err := publish.DeduplicationID(src, m)
	if err != nil {
		return nil, err
	}
	m.DeduplicationID = dedupID
	return m, nil
}

// callerIP returns the host part of the client's address.
func callerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
